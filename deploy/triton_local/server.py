"""Start ``tritonserver`` on 127.0.0.1 with free ports and wait until it is ready.

A wrong Python stub leaves Triton "loading" forever with no error, so readiness is always waited
for with a deadline, and the server's log is shown when it does not come.

In the foreground (``make triton``) Triton's output passes through ``shown_line`` on its way to the
terminal: on a host without a CUDA driver Triton always prints the error line
``E... server.cc:241] "CudaDriverHelper has not been initialized."`` although nothing failed (the
CPU configuration needs no driver), so that one line is replaced by a plain note; every other line
is passed through unchanged. ``DEEPFAKE_THIRD_PARTY_LOGS=true`` (the service's setting for native
log noise) shows the output unfiltered. ``start_triton`` without a filter, as the tests and
benchmarks call it, writes the output to its log file as it is.

    python -m deploy.triton_local.server [--repository model_repository] [--http-port 8000] ...
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import TypeAdapter, ValidationError

from deploy.ports import free_port, port_is_free
from deploy.triton_local.prepare import Tools, prepare

READY_TIMEOUT_S = 180.0

# glog's prefix (severity and date, time, thread id, file:line]), then the message; Triton 2.51
# quotes its messages, older releases did not.
NO_CUDA_DRIVER = re.compile(rb'^E\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] "?CudaDriverHelper has not been initialized\."?\s*$')
NO_CUDA_DRIVER_NOTE = (
    b'note: no CUDA driver on this host, so Triton runs CPU-only (its "CudaDriverHelper has not been'
    b' initialized" line is expected here, not a failure; DEEPFAKE_THIRD_PARTY_LOGS=true shows it)\n'
)
LineFilter = Callable[[bytes], bytes]


def shown_line(line: bytes) -> bytes:
    """One line of Triton's output as the terminal shows it: unchanged, except the CUDA driver error
    line every CPU host gets, which becomes ``NO_CUDA_DRIVER_NOTE``."""
    return NO_CUDA_DRIVER_NOTE if NO_CUDA_DRIVER.match(line) else line


def third_party_logs() -> bool:
    """``DEEPFAKE_THIRD_PARTY_LOGS``, read as the service's settings read it (true/false, 1/0, yes/no…)."""
    value = os.environ.get("DEEPFAKE_THIRD_PARTY_LOGS", "false")
    try:
        return TypeAdapter(bool).validate_python(value)
    except ValidationError:
        sys.exit(f"DEEPFAKE_THIRD_PARTY_LOGS={value!r} is neither true nor false")


class TritonStartError(RuntimeError):
    """Triton did not become ready; the message carries the end of its log."""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _forward(output: IO[bytes], log_path: Path, line_filter: LineFilter) -> None:
    with output, log_path.open("ab", buffering=0) as log:
        for line in output:
            try:
                log.write(line_filter(line))
            except OSError:  # the terminal went away: keep reading, so Triton never blocks on a full pipe
                pass


def _spawn(
    command: list[str], log_path: Path, environment: dict[str, str], line_filter: LineFilter | None
) -> tuple[subprocess.Popen, threading.Thread | None]:
    """Triton with its output appended to ``log_path``: as it is (the child keeps its own
    descriptor), or line by line through ``line_filter`` (a thread forwards it)."""
    if line_filter is None:
        with log_path.open("ab") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment), None
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment)
    forwarder = threading.Thread(
        target=_forward, args=(process.stdout, log_path, line_filter), name="triton-output", daemon=True
    )
    forwarder.start()
    return process, forwarder


@dataclass
class TritonServer:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int
    log_path: Path
    repository: Path
    tools: Tools
    command: list[str] = field(default_factory=list)
    line_filter: LineFilter | None = None
    forwarder: threading.Thread | None = None

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.is_file():  # the terminal (make triton): the output is above already
            return "(Triton's output is shown above)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:  # our process first: a server left on these ports by someone else must not pass as ours
            if self.process.poll() is not None:
                raise TritonStartError(f"tritonserver exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.is_ready():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise TritonStartError(f"tritonserver not ready after {timeout_s:.0f} s:\n{self.log_tail()}")
            time.sleep(0.25)

    def stop(self, kill: bool = False) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.forwarder is not None:  # Triton's last lines reach the terminal before we exit
            self.forwarder.join(timeout=5)

    def restart(self) -> None:
        """Same ports and repository, a new process (for fault tests)."""
        self.stop()
        self.process, self.forwarder = _spawn(self.command, self.log_path, self.tools.environment(), self.line_filter)
        self.wait_ready()


def start_triton(
    repository: Path,
    tools: Tools | None = None,
    config_name: str = "cpu",
    http_port: int | None = None,
    grpc_port: int | None = None,
    metrics_port: int | None = None,
    log_path: Path | None = None,
    extra_args: list[str] | None = None,
    wait: bool = True,
    line_filter: LineFilter | None = None,
) -> TritonServer:
    """``line_filter``: each line of Triton's output passes through it on its way to ``log_path``
    (``shown_line`` in the foreground); without one the output is written as it is."""
    tools = tools or prepare()
    ports = [http_port or free_port(), grpc_port or free_port(), metrics_port or free_port()]
    log_path = log_path or Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
    command = [
        str(tools.tritonserver),
        f"--model-repository={Path(repository).resolve()}",
        f"--backend-directory={tools.backends}",
        f"--model-config-name={config_name}",
        "--http-address=127.0.0.1",
        f"--http-port={ports[0]}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={ports[1]}",
        "--allow-metrics=true",
        f"--metrics-port={ports[2]}",
        "--allow-gpu-metrics=false",
        "--disable-auto-complete-config",
        # as in the manifests: the service's keepalive pings are welcome (grpc_channel.py)
        "--grpc-keepalive-permit-without-calls=true",
        "--grpc-http2-min-recv-ping-interval-without-data=10000",
        "--grpc-http2-max-pings-without-data=0",
        *(extra_args or []),
    ]
    process, forwarder = _spawn(command, log_path, tools.environment(), line_filter)
    server = TritonServer(
        process,
        http_port=ports[0],
        grpc_port=ports[1],
        metrics_port=ports[2],
        log_path=log_path,
        repository=Path(repository),
        tools=tools,
        command=command,
        line_filter=line_filter,
        forwarder=forwarder,
    )
    if wait:
        server.wait_ready()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description="Run tritonserver (CPU config) in the foreground")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    args = parser.parse_args()
    busy = [port for port in (args.http_port, args.grpc_port, args.metrics_port) if not port_is_free(port)]
    if busy:
        sys.exit(f"port(s) {', '.join(map(str, busy))} already in use (another tritonserver?); stop it first")
    server = start_triton(
        args.repository,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        log_path=Path("/dev/stdout"),
        line_filter=None if third_party_logs() else shown_line,
    )
    # SIGTERM (make, a process manager, CI) stops the server too, never leaving it on the ports.
    signal.signal(signal.SIGTERM, _interrupt)
    print(
        f"Triton ready: HTTP {server.http_url}, gRPC {server.grpc_url}, metrics {server.metrics_url}; Ctrl-C stops it",
        flush=True,
    )
    try:
        server.process.wait()
    except KeyboardInterrupt:
        pass
    server.stop()  # stops it if Ctrl-C came; either way its last lines are shown first
    sys.exit(server.process.returncode or 0)


if __name__ == "__main__":
    main()
