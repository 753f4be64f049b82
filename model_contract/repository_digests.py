"""A Triton model repository checked against a pinned digest list before Triton loads it.

A model repository is code, not data: a ``config.pbtxt`` can pick the python backend or load a
shared library, and in the cluster the repository is synced from object storage by an init
container. So the cluster must load exactly the files the export wrote, and nothing else.

``deepfake-export`` writes ``SHA256SUMS`` at the repository root (``sha256sum`` format, so
``sha256sum -c SHA256SUMS`` checks it too), listing every file. The operator pins the SHA-256 of
that list itself in the ``triton-model-source`` ConfigMap (``MODEL_REPOSITORY_SHA256SUMS_DIGEST``):
the list travels through the bucket with the models, so whoever can write the bucket can rewrite
the list too, and only a digest kept outside the bucket makes it proof. ``verify`` then fails on a
changed, missing or *extra* file (a dropped-in ``.so`` or a new model folder is not in the list).

    python -m model_contract.repository_digests write REPO
    python -m model_contract.repository_digests verify REPO [--expect-sha256 HEX]

No torch and no numpy here: the init container that verifies runs this module alone.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

LIST_NAME = "SHA256SUMS"
ENV_DIGEST = "MODEL_REPOSITORY_SHA256SUMS_DIGEST"
CONFIGMAP = "triton-model-source"
CHUNK = 1 << 20  # model files are hundreds of MB: hash them streamed, never read whole
MAX_LIST_BYTES = 16 << 20  # a hostile list is read whole; a real one is a few KB
PREFIX = 12  # hex digits shown of a mismatching digest: enough to tell them apart in a log

_LINE = re.compile(r"([0-9a-f]{64})  (.+)")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# sha256sum escapes names holding these (a leading backslash changes the line's format): refused.
_UNLISTABLE = ("\\", "\n", "\r")

EXIT_NOT_VERIFIED = 1
EXIT_NO_PIN = 2


@dataclass
class Verification:
    """What ``verify`` found: the problems (none = verified), the files listed and the list's digest."""

    problems: list[str] = field(default_factory=list)
    files: int = 0
    list_sha256: str | None = None


def file_sha256(path: Path) -> str:
    """SHA-256 hex of a file, read in chunks; opened without following a symlink where the OS can,
    so a file swapped for a link between the walk and the read is refused, not followed."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    digest = hashlib.sha256()
    with os.fdopen(descriptor, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def digest_of_list(path: Path) -> str:
    """SHA-256 hex of the SHA256SUMS file itself: the value an operator pins in the manifests."""
    return file_sha256(Path(path))


def pin_hint(list_sha256: str) -> str:
    """One line telling the operator where the list's digest goes."""
    return f'pin it: ConfigMap {CONFIGMAP}, key {ENV_DIGEST}: "{list_sha256}"'


def _scan(repository: Path) -> tuple[dict[str, Path], list[str]]:
    """Every regular file under ``repository`` by relative POSIX path (the list itself left out),
    and what cannot be listed: any symlink (inside or outside the tree: a link's target is not what
    was hashed, and it can change after the check), special files, and names sha256sum escapes."""
    files: dict[str, Path] = {}
    problems: list[str] = []
    for folder, dirnames, filenames in os.walk(repository, followlinks=False):
        dirnames.sort()
        base = Path(folder)
        for name in sorted([*dirnames, *filenames]):
            path = base / name
            relative = path.relative_to(repository).as_posix()
            if path.is_symlink():
                problems.append(f"{relative} is a symlink (to {os.readlink(path)}): symlinks are not allowed")
                if name in dirnames:
                    dirnames.remove(name)  # os.walk does not follow it anyway; said once, here
                continue
            if name in dirnames:
                continue
            if relative == LIST_NAME:
                continue
            if any(character in relative for character in _UNLISTABLE) or not _utf8(relative):
                problems.append(f"{relative!r}: a file name SHA256SUMS cannot hold (backslash, newline, not UTF-8)")
                continue
            if not stat.S_ISREG(path.lstat().st_mode):
                problems.append(f"{relative} is not a regular file (a device, FIFO or socket)")
                continue
            files[relative] = path
    return dict(sorted(files.items())), problems


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # os.walk's surrogate escapes for undecodable bytes
        return False
    return True


def write_digest_list(repository: Path) -> Path:
    """Write ``SHA256SUMS`` at the repository root listing every regular file, sorted by relative
    POSIX path, as ``<64 hex>  <path>`` lines (``sha256sum -c`` accepts it). Returns its path.

    Raises ``ValueError`` where the tree holds a symlink (any: one inside the tree today can be
    retargeted outside it tomorrow, and Triton would load whatever it points at), a special file, or
    a name the format cannot hold; the list is then not written, so no list ever vouches for them.
    Written to a temporary name and renamed, so a reader never sees half a list.
    """
    repository = Path(repository)
    if not repository.is_dir():
        raise ValueError(f"{repository} is not a directory")
    files, problems = _scan(repository)
    if problems:
        raise ValueError(f"cannot list {repository}: " + "; ".join(problems))
    text = "".join(f"{file_sha256(path)}  {relative}\n" for relative, path in files.items())
    final = repository / LIST_NAME
    handle, temporary = tempfile.mkstemp(prefix=f".{LIST_NAME}.", suffix=".partial", dir=repository)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)
        umask = os.umask(0)  # mkstemp made it 0600: Triton's user and the init container must read it
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, final)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return final


def _parse(data: bytes) -> tuple[dict[str, str], list[str]]:
    """The list's entries (path -> hex) and its malformed lines. Paths must be plain relative POSIX
    paths inside the tree: an absolute path or ``..`` would have ``sha256sum -c`` check a file
    outside the repository, and is refused, not resolved."""
    problems: list[str] = []
    entries: dict[str, str] = {}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return entries, [f"{LIST_NAME} is not UTF-8 text"]
    lines = text.split("\n")
    if lines[-1] != "":
        problems.append(f"{LIST_NAME} does not end with a newline (truncated?)")
    for number, line in enumerate(lines[:-1] if lines[-1] == "" else lines, start=1):
        match = _LINE.fullmatch(line)
        if match is None:
            problems.append(f"{LIST_NAME} line {number} is malformed (want '<64 lowercase hex>  <path>'): {line!r}")
            continue
        digest, relative = match.groups()
        problem = _path_problem(relative)
        if problem:
            problems.append(f"{LIST_NAME} line {number}: {relative!r} {problem}")
        elif relative in entries:
            problems.append(f"{LIST_NAME} line {number}: {relative} is listed twice")
        else:
            entries[relative] = digest
    return entries, problems


def _path_problem(relative: str) -> str | None:
    if relative.startswith("/"):
        return "is an absolute path"
    parts = relative.split("/")
    if ".." in parts:
        return "has '..' (a path outside the repository)"
    if any(character in relative for character in _UNLISTABLE) or "" in parts or "." in parts:
        return "is not a plain relative path"
    if PurePosixPath(relative).as_posix() != relative:
        return "is not a plain relative path"
    if relative == LIST_NAME:
        return "is the list itself"
    return None


def check(repository: Path, expected_list_sha256: str | None) -> Verification:
    """``verify`` with the counts a caller prints: every problem is collected, none stops the rest,
    so the operator reads the whole story in one log."""
    repository = Path(repository)
    result = Verification()
    problems = result.problems
    if not repository.is_dir():
        problems.append(f"{repository} is not a directory")
        return result
    list_path = repository / LIST_NAME
    if list_path.is_symlink() or (list_path.exists() and not list_path.is_file()):
        problems.append(f"{LIST_NAME} is not a regular file")
        return result
    if not list_path.exists():
        problems.append(f"no {LIST_NAME} in {repository}: write it with `deepfake-export` or `{_command('write')}`")
        return result
    if list_path.stat().st_size > MAX_LIST_BYTES:
        problems.append(f"{LIST_NAME} is larger than {MAX_LIST_BYTES} bytes")
        return result
    data = list_path.read_bytes()  # hashed and parsed from the same bytes: no swap in between
    result.list_sha256 = hashlib.sha256(data).hexdigest()
    if expected_list_sha256 is not None:
        pinned = expected_list_sha256.strip().lower()
        if not _SHA256.fullmatch(pinned):
            problems.append(f"the pinned digest {expected_list_sha256!r} is not a SHA-256 (64 hex digits)")
        elif not hmac.compare_digest(pinned, result.list_sha256):
            problems.append(
                f"{LIST_NAME} has sha256 {result.list_sha256}, not the pinned {pinned}:"
                " the list was changed or the pin is stale"
            )
    entries, malformed = _parse(data)
    problems.extend(malformed)
    result.files = len(entries)
    files, unlistable = _scan(repository)
    problems.extend(unlistable)
    for relative, expected in entries.items():
        path = files.get(relative)
        if path is None:
            if not os.path.lexists(repository / relative):
                problems.append(f"{relative} is listed but missing")
            elif not (repository / relative).is_symlink():  # a symlink was said above
                problems.append(f"{relative} is listed but is not a regular file in the tree")
            continue
        try:
            actual = file_sha256(path)
        except OSError as error:
            problems.append(f"{relative} cannot be read: {error}")
            continue
        if actual != expected:
            problems.append(f"{relative} differs: expected sha256 {expected[:PREFIX]}..., actual {actual[:PREFIX]}...")
    for relative in sorted(files.keys() - entries.keys()):
        problems.append(f"{relative} is not listed in {LIST_NAME} (an unlisted extra file)")
    return result


def verify(repository: Path, expected_list_sha256: str | None) -> list[str]:
    """Human-readable problems with the repository (empty: verified). Without a pinned digest only
    the files are checked against the list, which proves nothing against whoever can rewrite the
    list as well: the CLI refuses that; callers of this function must pin too for a real check."""
    return check(repository, expected_list_sha256).problems


def _command(action: str) -> str:
    return f"python -m model_contract.repository_digests {action} REPO"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m model_contract.repository_digests",
        description="Write or verify the SHA256SUMS list of a Triton model repository.",
    )
    actions = parser.add_subparsers(dest="action", required=True)
    write = actions.add_parser("write", help=f"write REPO/{LIST_NAME} and print its sha256 to pin")
    write.add_argument("repository", type=Path, metavar="REPO")
    check_ = actions.add_parser("verify", help=f"check REPO against REPO/{LIST_NAME} and the pinned digest")
    check_.add_argument("repository", type=Path, metavar="REPO")
    check_.add_argument(
        "--expect-sha256",
        metavar="HEX",
        help=f"the pinned sha256 of {LIST_NAME} (default: the environment variable {ENV_DIGEST})",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.action == "write":
        try:
            path = write_digest_list(args.repository)
        except (ValueError, OSError) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_NOT_VERIFIED
        digest = digest_of_list(path)
        print(f"wrote {path}: {len(path.read_text().splitlines())} files, list sha256 {digest}")
        print(pin_hint(digest))
        return 0
    expected = args.expect_sha256 or os.environ.get(ENV_DIGEST) or None
    if expected is None:
        print(
            f"model repository NOT verified: no pinned digest: set {ENV_DIGEST} (or pass --expect-sha256);"
            f" a list checked against nothing proves nothing",
            file=sys.stderr,
        )
        return EXIT_NO_PIN
    result = check(args.repository, expected)
    if result.problems:
        for problem in result.problems:
            print(f"model repository NOT verified: {problem}", file=sys.stderr)
        return EXIT_NOT_VERIFIED
    print(f"verified: {result.files} files, list sha256 {result.list_sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
