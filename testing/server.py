"""The real service on a real socket: uvicorn in a thread, on a free loopback port."""

from __future__ import annotations

import httpx

from evaluation.local_service import local_service
from preprocess_service.settings import Settings


def running_service(settings: Settings, startup_timeout_s: float = 60.0):
    """Yields the base URL; the server is stopped (lifespan shutdown included) on exit. The same
    in-process server deepfake-eval starts (evaluation/local_service.py)."""
    return local_service(settings, startup_timeout_s)


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
