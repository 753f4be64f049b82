"""`make image-test`: the built service image, run twice, analyses a seed video each time.

1. As built: ``buildah run`` (chroot isolation, host network, service on loopback), the model
   repository mounted read-only at /models.
2. As the Kubernetes manifests run it: read-only root filesystem, user 10001, a tmpfs on /tmp and
   nothing else writable. Podman cannot run containers in this sandbox (its OCI runtime may not
   set rlimits), so the image's root filesystem is bind-mounted read-only and the service started
   in it with ``chroot --userspec=10001:10001`` and the image's own environment.

Each run: /readyz answers, POST /predict/ with a seed video gives a verdict on 30 frames from the
mounted model, with a receipt; in the read-only run, writing outside /tmp fails.

    python deploy/docker/image_test.py [--image localhost/deepfake-service:0.1.0] [--repository model_repository]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from deploy.ports import free_port, wait_until  # noqa: E402

SEED_VIDEO = ROOT.parent / "shared" / "testdata" / "seed_videos" / "VIDEO_40_HD_SHORT.mp4"
BUILDAH = ["buildah"]


def buildah(*args: str) -> str:
    return subprocess.run([*BUILDAH, *args], check=True, capture_output=True, text=True).stdout.strip()


@contextmanager
def container(image: str) -> Iterator[str]:
    name = buildah("from", "--quiet", image)
    try:
        yield name
    finally:
        subprocess.run([*BUILDAH, "rm", name], capture_output=True)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def serve_and_check(command: list[str], port: int, env: dict[str, str] | None, what: str) -> dict:
    log = tempfile.NamedTemporaryFile(prefix="image-test-", suffix=".log", delete=False)
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until(lambda: _ready(url), 240, what, alive=lambda: process.poll() is None, interval_s=0.5)
        except RuntimeError:
            print(Path(log.name).read_text()[-4000:], file=sys.stderr)
            raise
        model = httpx.get(url + "/readyz", timeout=10).json()["model"]
        files = {"file": (SEED_VIDEO.name, SEED_VIDEO.read_bytes())}
        answer = httpx.post(url + "/predict/", files=files, timeout=300)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["result"] in {"FAKE", "REAL"} and body["frames_analyzed"] == 30, body
        assert body["frames_with_face"] > 0 and body["receipt"].count(".") == 2
        assert body["model"]["checkpoint_sha256"] == model["checkpoint_sha256"]
        return {"result": body["result"], "confidence": body["confidence"], "model": model["family"]}
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def run_as_built(image: str, repository: Path) -> dict:
    with container(image) as name:
        port = free_port()
        command = [
            *BUILDAH, "run", "--isolation", "chroot", "--network", "host",
            "--volume", f"{repository}:/models:ro", name, "--",
            "deepfake-serve", "--host", "127.0.0.1", "--port", str(port),
        ]  # fmt: skip
        return serve_and_check(command, port, None, "the image (buildah run)")


def _mount(stack: ExitStack, *args: str) -> None:
    target = args[-1]
    subprocess.run(["mount", *args], check=True)
    stack.callback(subprocess.run, ["umount", "-l", target], check=False)


def run_read_only(image: str, repository: Path) -> dict:
    config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    environment = dict(entry.split("=", 1) for entry in config.get("Env", []))
    environment["DEEPFAKE_KEYS_DIR"] = "/tmp/keys"  # in a cluster the key is a mounted Secret
    assert config.get("User") == "10001", config.get("User")
    with container(image) as name, ExitStack() as stack:
        rootfs = buildah("mount", name)
        stack.callback(subprocess.run, [*BUILDAH, "umount", name], check=False)
        target = tempfile.mkdtemp(prefix="deepfake-readonly-root-")
        _mount(stack, "--bind", rootfs, target)
        subprocess.run(["mount", "-o", "remount,ro,bind", target], check=True)
        _mount(stack, "-t", "proc", "proc", f"{target}/proc")
        _mount(stack, "--rbind", "/dev", f"{target}/dev")
        _mount(stack, "--rbind", "/sys", f"{target}/sys")  # tcmalloc (in mediapipe) counts CPUs there
        _mount(stack, "-t", "tmpfs", "-o", "mode=1777,size=1g", "tmpfs", f"{target}/tmp")
        _mount(stack, "--bind", str(repository), f"{target}/models")
        subprocess.run(["mount", "-o", "remount,ro,bind", f"{target}/models"], check=True)
        as_user = ["chroot", "--userspec=10001:10001", target]
        written = subprocess.run([*as_user, "/bin/sh", "-c", "touch /opt/venv/x"], capture_output=True)
        assert written.returncode != 0, "the root filesystem must be read-only"
        port = free_port()
        command = [*as_user, "/opt/venv/bin/deepfake-serve", "--host", "127.0.0.1", "--port", str(port)]
        return serve_and_check(command, port, environment, "the image (read-only root, user 10001)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="localhost/deepfake-service:0.1.0")
    parser.add_argument("--repository", type=Path, default=ROOT / "model_repository")
    args = parser.parse_args()
    repository = args.repository.resolve()
    print(f"as built: {run_as_built(args.image, repository)}")
    print(f"read-only root, user 10001: {run_read_only(args.image, repository)}")
    print("image-test passed")


if __name__ == "__main__":
    main()
