"""Pin every image of the Kubernetes manifests by digest, or check that a release has.

A tag can be moved to other bytes (by the registry's owner, or by anyone who takes over the name);
a digest cannot. The kustomizations keep ``newTag`` as the readable name of a release and carry a
``digest`` beside it, which kustomize renders as ``image@sha256:…``. ``pin`` asks each image's registry
what its tag points at now (the OCI distribution API: a HEAD on the manifest, anonymous bearer token
where the registry asks for one) and writes that digest; ``check`` exits 1 naming every image without
one, so a release pipeline runs ``pin`` where registries are reachable and ``check`` before applying.

    python -m deploy.release_images check
    python -m deploy.release_images pin [--refresh] [--insecure-registry HOST:PORT ...]

The files are edited line by line (their comments stay); each image entry is the ``- name:`` item of a
kustomization's ``images:`` list, as written in this repository.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
KUSTOMIZATIONS = [
    ROOT / "deploy" / "k8s" / "base" / "kustomization.yaml",
    ROOT / "deploy" / "k8s" / "kserve" / "kustomization.yaml",
    ROOT / "deploy" / "k8s" / "perf" / "kustomization.yaml",
]
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
DOCKER_HUB = "registry-1.docker.io"


@dataclass
class ImageEntry:
    """One item of a kustomization's ``images:`` list, and where it sits in the file."""

    path: Path
    name: str
    new_name: str | None
    tag: str | None
    digest: str | None
    first_line: int  # index of the "- name:" line
    last_line: int  # index of the entry's last line

    @property
    def reference(self) -> str:
        return self.new_name or self.name


def read_entries(path: Path) -> list[ImageEntry]:
    """The ``images:`` entries of one kustomization file."""
    lines = path.read_text().splitlines()
    entries: list[ImageEntry] = []
    in_images = False
    for index, line in enumerate(lines):
        if re.match(r"^images:\s*$", line):
            in_images = True
            continue
        if in_images and line and not line.startswith((" ", "#")):
            in_images = False  # the next top-level key
        if not in_images:
            continue
        item = re.match(r"^  - name:\s*(\S+)", line)
        field = re.match(r"^    (newName|newTag|digest):\s*(\S+)", line)
        if item:
            entries.append(ImageEntry(path, item.group(1).strip("'\""), None, None, None, index, index))
        elif field and entries:
            key, value = field.group(1), field.group(2).strip("'\"")
            entry = entries[-1]
            if key == "newName":
                entry.new_name = value
            elif key == "newTag":
                entry.tag = value
            else:
                entry.digest = value
            entry.last_line = index
    return entries


def unpinned(paths: list[Path]) -> list[ImageEntry]:
    """Entries whose digest is missing or is not a sha256 digest."""
    return [
        entry for path in paths for entry in read_entries(path) if not (entry.digest and DIGEST.match(entry.digest))
    ]


def split_reference(reference: str) -> tuple[str, str]:
    """(registry host, repository path) of an image name, as Docker reads one."""
    first, _, rest = reference.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        host, repository = first, rest
    else:
        host, repository = DOCKER_HUB, reference
    if host in ("docker.io", "index.docker.io"):
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    return host, repository


def _bearer_token(client: httpx.Client, challenge: str) -> str | None:
    """An anonymous token for the scope a 401's ``WWW-Authenticate: Bearer`` challenge names."""
    if not challenge.lower().startswith("bearer "):
        return None
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", None)
    if not realm:
        return None
    answer = client.get(realm, params=params)
    answer.raise_for_status()
    body = answer.json()
    token = body.get("token") or body.get("access_token")
    return str(token) if token else None


def resolve(reference: str, tag: str, insecure: frozenset[str] = frozenset(), timeout_s: float = 30.0) -> str:
    """The digest the registry serves for ``reference:tag`` now (a multi-platform index's own digest)."""
    host, repository = split_reference(reference)
    scheme = "http" if host in insecure else "https"
    url = f"{scheme}://{host}/v2/{repository}/manifests/{tag}"
    headers = {"Accept": MANIFEST_TYPES}
    with httpx.Client(timeout=timeout_s, follow_redirects=True) as client:
        answer = client.head(url, headers=headers)
        if answer.status_code == 401:
            token = _bearer_token(client, answer.headers.get("www-authenticate", ""))
            if token:
                headers["Authorization"] = f"Bearer {token}"
                answer = client.head(url, headers=headers)
        if answer.status_code != 200:
            raise LookupError(f"{reference}:{tag}: the registry answered {answer.status_code} for {url}")
        digest = answer.headers.get("docker-content-digest")
        if not digest:  # not every registry sends it on HEAD: the digest is that of the manifest's bytes
            body = client.get(url, headers=headers)
            body.raise_for_status()
            digest = "sha256:" + hashlib.sha256(body.content).hexdigest()
    if not DIGEST.match(digest):
        raise LookupError(f"{reference}:{tag}: {digest!r} is not a sha256 digest")
    return digest


def write_digest(entry: ImageEntry, digest: str) -> None:
    """Set ``digest:`` in the entry (replacing one that is there), keeping every other line."""
    lines = entry.path.read_text().splitlines()
    block = range(entry.first_line, entry.last_line + 1)
    existing = [i for i in block if re.match(r"^    digest:", lines[i])]
    if existing:
        lines[existing[0]] = f"    digest: {digest}"
    else:
        lines.insert(entry.last_line + 1, f"    digest: {digest}")
    entry.path.write_text("\n".join(lines) + "\n")


def pin(paths: list[Path], insecure: frozenset[str], refresh: bool) -> int:
    """Resolve and write the digest of every entry without one (every entry with ``refresh``)."""
    for path in paths:
        for entry in read_entries(path):  # re-read after each write: line numbers move
            if entry.digest and not refresh:
                continue
            if not entry.tag:
                print(f"{path}: {entry.name} has no newTag to resolve", file=sys.stderr)
                return 1
            fresh = next(e for e in read_entries(path) if e.name == entry.name)
            digest = resolve(entry.reference, entry.tag, insecure)
            write_digest(fresh, digest)
            print(f"{entry.reference}:{entry.tag} -> {digest}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.release_images", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["check", "pin"])
    parser.add_argument("--kustomization", type=Path, action="append", help="default: base, kserve and perf")
    parser.add_argument("--refresh", action="store_true", help="pin: resolve entries that have a digest too")
    parser.add_argument(
        "--insecure-registry", action="append", default=[], help="HOST:PORT spoken to over plain HTTP (a local one)"
    )
    args = parser.parse_args(argv)
    paths = args.kustomization or KUSTOMIZATIONS
    if args.command == "pin":
        try:
            return pin(paths, frozenset(args.insecure_registry), args.refresh)
        except (LookupError, httpx.HTTPError) as error:
            print(f"cannot pin: {error}", file=sys.stderr)
            return 1
    missing = unpinned(paths)
    for entry in missing:
        where = entry.path.relative_to(ROOT) if entry.path.is_relative_to(ROOT) else entry.path
        print(
            f"{where}: {entry.reference}:{entry.tag} has no digest (python -m deploy.release_images pin)",
            file=sys.stderr,
        )
    if not missing:
        print(f"every image pinned by digest ({sum(len(read_entries(p)) for p in paths)} in {len(paths)} files)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
