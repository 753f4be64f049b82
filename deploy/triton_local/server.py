"""Start ``tritonserver`` on 127.0.0.1 with free ports and wait until it is ready.

A wrong Python stub leaves Triton "loading" forever with no error, so readiness is always waited
for with a deadline, and the server's log is shown when it does not come.

    python -m deploy.triton_local.server [--repository model_repository] [--http-port 8000] ...
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from deploy.ports import free_port, port_is_free
from deploy.triton_local.prepare import Tools, prepare

READY_TIMEOUT_S = 180.0


class TritonStartError(RuntimeError):
    """Triton did not become ready; the message carries the end of its log."""


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


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

    def restart(self) -> None:
        """Same ports and repository, a new process (for fault tests)."""
        self.stop()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.tools.environment()
            )
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
) -> TritonServer:
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
        *(extra_args or []),
    ]
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=tools.environment())
    server = TritonServer(process, *ports, log_path=log_path, repository=Path(repository), tools=tools, command=command)
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
        server.stop()
    sys.exit(server.process.returncode or 0)


if __name__ == "__main__":
    main()
