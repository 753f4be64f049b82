"""Third-party native log lines kept out of the service's log, unless asked for.

MediaPipe's LiteRT runtime writes from C++ straight to file descriptor 2, below Python's logging:
"INFO: [environment.cc:36] Creating LiteRT environment…" for every detector, and "Input tensor
memory is not aligned…" on every frame (it copies a tensor of its own; nothing the caller passes
changes it, measured). Neither has a switch of its own. So ``deepfake-serve`` puts a pipe in front
of descriptor 2 and a thread that forwards every line except those of ``NOISE``, unchanged and in
order; ``DEEPFAKE_THIRD_PARTY_LOGS=true`` leaves descriptor 2 alone. Where the log is JSON lines
(``DEEPFAKE_LOG_FORMAT=json``), a line that is not JSON (a native library's, a traceback's) is
wrapped as one, logger ``native``, so that a log shipper never meets a line it cannot parse.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import sys
import threading
from datetime import UTC, datetime

NOISE = re.compile(
    rb"^(INFO: \[[a-z_]+\.cc:\d+\] |WARNING: Logging before InitGoogle\(\)|"
    rb"[IW]\d{4} [\d:. ]+\d+ inference_runner_litert\.cc:\d+\] Input tensor memory is not aligned|"
    rb"INFO: Created TensorFlow Lite XNNPACK delegate)"
)


def is_noise(line: bytes) -> bool:
    return NOISE.match(line) is not None


def as_json_line(line: bytes) -> bytes:
    """A line as it is if it is a JSON object already, else wrapped as one (logger ``native``)."""
    if line.startswith(b"{"):
        try:
            json.loads(line)
            return line
        except ValueError:
            pass
    wrapped = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": "WARNING",
        "logger": "native",
        "message": line.decode("utf-8", "replace"),
        "request_id": None,
    }
    return json.dumps(wrapped).encode()


def filter_native_stderr(json_lines: bool = False) -> threading.Thread:
    """From now on, lines written to descriptor 2 (by any thread or library) pass through a filter
    thread that drops the known noise; returns that thread (a daemon)."""
    sys.stderr.flush()
    original, saved = os.dup(2), os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    shown = as_json_line if json_lines else (lambda line: line)

    def forward() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe, os.fdopen(original, "wb", buffering=0) as out:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out.write(b"".join(shown(line) + b"\n" for line in lines if not is_noise(line)))
            if pending and not is_noise(pending):
                out.write(shown(pending))

    thread = threading.Thread(target=forward, name="native-stderr-filter", daemon=True)
    thread.start()

    def drain() -> None:
        """At exit (a traceback included, written before atexit runs): descriptor 2 back, the pipe's
        last lines forwarded, so nothing said while stopping is lost."""
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's write end: the filter reads to its end and stops
        thread.join(timeout=5)

    atexit.register(drain)
    return thread
