"""Image digests: `python -m deploy.release_images pin` against a real registry (Debian's docker-registry,
the CNCF distribution server, started here on loopback), and `check` on this repository's kustomizations."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deploy import release_images
from deploy.ports import free_port, wait_until
from tests.conftest import ROOT

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Iterator[str]:
    """host:port of a private registry (`make registry` installs the binary)."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is installed by `make test` (Debian package docker-registry)"
    root = tmp_path_factory.mktemp("registry")
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    log = (root / "log").open("wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url + "/v2/"), 30, "the registry", alive=lambda: process.poll() is None)
        yield f"127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _answers(url: str) -> bool:
    """Refused until the registry listens: on a loaded machine the first probe comes before its bind."""
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def push(host: str, repository: str, tag: str, config: bytes) -> str:
    """Upload a one-blob image (its config; no layers needed) and tag it; the manifest's digest."""
    base = f"http://{host}/v2/{repository}"
    blob_digest = "sha256:" + hashlib.sha256(config).hexdigest()
    started = httpx.post(f"{base}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["location"]
    location = location if location.startswith("http") else f"http://{host}{location}"
    separator = "&" if "?" in location else "?"
    put = httpx.put(f"{location}{separator}digest={blob_digest}", content=config)
    assert put.status_code == 201, put.text
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob_digest,
                "size": len(config),
            },
            "layers": [],
        }
    ).encode()
    answer = httpx.put(f"{base}/manifests/{tag}", content=manifest, headers={"Content-Type": OCI_MANIFEST})
    assert answer.status_code == 201, answer.text
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - job.yaml
# a comment that must survive
images:
  - name: {host}/deepfake/service  # the service
    newTag: "1.0"
  - name: tool
    newName: {host}/deepfake/tool
    newTag: "2.0"
    digest: sha256:{stale}
other: value
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deploy.release_images", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_pin_writes_what_the_registry_serves_and_check_gates_on_it(registry, tmp_path):
    service_digest = push(registry, "deepfake/service", "1.0", b'{"architecture":"amd64","os":"linux"}')
    tool_digest = push(registry, "deepfake/tool", "2.0", b'{"architecture":"arm64","os":"linux"}')
    kustomization = tmp_path / "kustomization.yaml"
    kustomization.write_text(KUSTOMIZATION.format(host=registry, stale="0" * 64))

    before = run("check", "--kustomization", str(kustomization))
    assert before.returncode == 1 and f"{registry}/deepfake/service:1.0 has no digest" in before.stderr

    pinned = run("pin", "--kustomization", str(kustomization), "--insecure-registry", registry)
    assert pinned.returncode == 0, pinned.stderr
    entries = {e.name: e for e in release_images.read_entries(kustomization)}
    assert entries[f"{registry}/deepfake/service"].digest == service_digest
    assert entries["tool"].digest == "sha256:" + "0" * 64  # pinned already: kept without --refresh
    text = kustomization.read_text()
    assert "# a comment that must survive" in text and "other: value" in text

    refreshed = run("pin", "--refresh", "--kustomization", str(kustomization), "--insecure-registry", registry)
    assert refreshed.returncode == 0, refreshed.stderr
    assert {e.name: e.digest for e in release_images.read_entries(kustomization)}["tool"] == tool_digest
    assert run("check", "--kustomization", str(kustomization)).returncode == 0


def test_a_tag_the_registry_lacks_fails_the_pin(registry, tmp_path):
    kustomization = tmp_path / "kustomization.yaml"
    kustomization.write_text(f"images:\n  - name: {registry}/deepfake/absent\n    newTag: nope\n")
    failed = run("pin", "--kustomization", str(kustomization), "--insecure-registry", registry)
    assert failed.returncode == 1 and "404" in failed.stderr
    assert "digest" not in kustomization.read_text()


def test_image_names_resolve_to_their_registries():
    assert release_images.split_reference("nvcr.io/nvidia/tritonserver") == ("nvcr.io", "nvidia/tritonserver")
    assert release_images.split_reference("amazon/aws-cli") == ("registry-1.docker.io", "amazon/aws-cli")
    assert release_images.split_reference("debian") == ("registry-1.docker.io", "library/debian")
    assert release_images.split_reference("localhost:5000/x") == ("localhost:5000", "x")


def test_every_image_of_the_manifests_is_listed_for_pinning():
    """Each image a rendered manifest uses has an entry the release pins (none slips past by a literal tag)."""
    names = {e.name for path in release_images.KUSTOMIZATIONS for e in release_images.read_entries(path)}
    assert names == {"deepfake-service", "nvcr.io/nvidia/tritonserver", "amazon/aws-cli"}
    for path in release_images.KUSTOMIZATIONS:
        for entry in release_images.read_entries(path):
            assert entry.tag, entry.name
    unpinned = {e.name for e in release_images.unpinned(release_images.KUSTOMIZATIONS)}
    # None can be resolved from this build host (no registry reachable); a release runs `pin` first.
    assert unpinned == names
    assert Path(ROOT / "deploy" / "k8s" / "base" / "kustomization.yaml").exists()
