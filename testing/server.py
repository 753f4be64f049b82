"""The real service on a real socket: uvicorn in a thread on a free loopback port, or
``deepfake-serve`` as its own process (as each replica of a Deployment runs it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from deploy.ports import free_port, wait_until
from evaluation.local_service import local_service
from preprocess_service.settings import Settings


def running_service(settings: Settings, startup_timeout_s: float = 60.0):
    """Yields the base URL; the server is stopped (lifespan shutdown included) on exit. The same
    in-process server deepfake-eval starts (evaluation/local_service.py), without its native log
    filter: pytest captures descriptor 2 and swaps it around every test, which would cut the filter's
    pipe off at the first swap and leave pytest's capture file as descriptor 2 at exit. What the
    filter drops is tested on ``deepfake-serve`` (tests/test_logs.py) and in
    tests/unit/test_native_logs.py."""
    return local_service(settings, startup_timeout_s, native_log_filter=False)


def post_file(
    base_url: str,
    path_or_bytes,
    endpoint: str = "/predict/",
    filename: str = "video.mp4",
    field: str = "file",
    data: dict | None = None,
    **kwargs,
) -> httpx.Response:
    content = path_or_bytes.read_bytes() if hasattr(path_or_bytes, "read_bytes") else path_or_bytes
    name = getattr(path_or_bytes, "name", filename)
    return httpx.post(base_url + endpoint, files={field: (name, content)}, data=data, timeout=120, **kwargs)


@contextmanager
def serve_process(repository: Path, folder: Path, environment: dict[str, str]) -> Iterator[str]:
    """``deepfake-serve`` as its own process, as each replica of a Deployment runs it."""
    port = free_port()
    env = {
        **os.environ,
        "DEEPFAKE_MODEL_REPOSITORY": str(repository),
        "DEEPFAKE_KEYS_DIR": str(folder / "keys"),
        "DEEPFAKE_DATABASE_URL": f"sqlite:///{folder}/history.sqlite3",
        **environment,
    }
    command = [sys.executable, "-m", "preprocess_service", "--port", str(port)]
    log = (folder / f"serve-{port}.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, 120, "deepfake-serve", alive=lambda: process.poll() is None, interval_s=0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()
