"""The service itself, in this process, on a free loopback port: what ``deepfake-eval DIR`` measures
when no ``--url`` is given (the same app, routes and analysis code as ``deepfake-serve``).

Its native log noise (MediaPipe/LiteRT's lines on descriptor 2) is filtered out as
``deepfake-serve`` filters it (``preprocess_service/native_logs.py``), and
``DEEPFAKE_THIRD_PARTY_LOGS=true`` lets it through here too.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import uvicorn

from deploy.ports import free_port, wait_until
from preprocess_service.access import server_options
from preprocess_service.app import create_app
from preprocess_service.native_logs import filter_native_stderr
from preprocess_service.settings import Settings


@cache
def _filter_native_logs(json_lines: bool) -> None:
    """Once per process: the filter stays in front of descriptor 2 until the process exits."""
    filter_native_stderr(json_lines)


@contextmanager
def local_service(
    settings: Settings, startup_timeout_s: float = 120.0, native_log_filter: bool = True
) -> Iterator[str]:
    """Yields the base URL. ``native_log_filter=False`` leaves descriptor 2 alone whatever the
    settings say (under pytest, whose capture owns it)."""
    if native_log_filter and not settings.third_party_logs:
        _filter_native_logs(settings.log_format == "json")
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        **server_options(settings.trusted_proxies),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True, name="deepfake-eval-service")
    thread.start()
    wait_until(lambda: server.started, startup_timeout_s, "the service", alive=thread.is_alive, interval_s=0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
