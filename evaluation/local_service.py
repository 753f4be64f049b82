"""The service itself, in this process, on a free loopback port: what ``deepfake-eval DIR`` measures
when no ``--url`` is given (the same app, routes and analysis code as ``deepfake-serve``)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from deploy.ports import free_port, wait_until
from preprocess_service.access import server_options
from preprocess_service.app import create_app
from preprocess_service.settings import Settings


@contextmanager
def local_service(settings: Settings, startup_timeout_s: float = 120.0) -> Iterator[str]:
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
