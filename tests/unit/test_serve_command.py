"""``deepfake-serve`` on a port that is taken says so in words and how to choose another, instead of
uvicorn's ``Errno 98`` traceback after loading the models (failed before: a second ``make serve``
died with "[Errno 98] address already in use" and a make error)."""

from __future__ import annotations

import socket
import subprocess
import sys

from preprocess_service.__main__ import port_in_use


def test_a_taken_port_is_refused_with_what_to_do() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        result = subprocess.run(
            [sys.executable, "-m", "preprocess_service", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"make serve PORT={port + 1}" in result.stderr and "Traceback" not in result.stderr


def test_a_free_port_is_free() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert not port_in_use("127.0.0.1", port)
