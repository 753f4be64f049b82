"""Loopback ports and readiness waits, for the local servers the tests, benchmarks and tools start."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable


def free_port() -> int:
    """A port free on 127.0.0.1 now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_is_free(port: int) -> bool:
    """No server listens there. SO_REUSEADDR as servers set it: connections a stopped server left in
    TIME_WAIT do not make its port look busy."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_until(
    ready: Callable[[], bool],
    timeout_s: float,
    what: str,
    alive: Callable[[], bool] = lambda: True,
    interval_s: float = 0.1,
) -> None:
    """Poll ``ready`` until it holds; fail early if ``alive`` stops holding, or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if not alive():
            raise RuntimeError(f"{what} stopped before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready after {timeout_s:g} s")
        time.sleep(interval_s)
