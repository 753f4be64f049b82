"""The real service on a real socket: uvicorn in a thread, on a free loopback port."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from deploy.ports import free_port, wait_until
from preprocess_service.app import create_app
from preprocess_service.settings import Settings


@contextmanager
def running_service(settings: Settings, startup_timeout_s: float = 60.0) -> Iterator[str]:
    """Yields the base URL; the server is stopped (lifespan shutdown included) on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, startup_timeout_s, "the service", alive=thread.is_alive, interval_s=0.05)
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
