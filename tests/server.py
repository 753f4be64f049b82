"""The real service on a real socket: uvicorn in a thread, on a free loopback port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from preprocess_service.app import create_app
from preprocess_service.settings import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_service(settings: Settings, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Yields the base URL; the server is stopped (lifespan shutdown included) on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


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
