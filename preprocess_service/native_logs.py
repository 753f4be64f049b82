"""Third-party native log lines kept out of the service's log, unless asked for.

MediaPipe's LiteRT runtime writes from C++ straight to file descriptor 2, below Python's logging:
"INFO: [environment.cc:36] Creating LiteRT environment…" for every detector, and "Input tensor
memory is not aligned…" on every frame (it copies a tensor of its own; nothing the caller passes
changes it, measured). Neither has a switch of its own. So ``deepfake-serve`` puts a pipe in front
of descriptor 2 and a thread that forwards every line except those of ``NOISE``, unchanged and in
order; ``DEEPFAKE_THIRD_PARTY_LOGS=true`` leaves descriptor 2 alone.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading

NOISE = re.compile(
    rb"^(INFO: \[[a-z_]+\.cc:\d+\] |WARNING: Logging before InitGoogle\(\)|"
    rb"[IW]\d{4} [\d:. ]+\d+ inference_runner_litert\.cc:\d+\] Input tensor memory is not aligned|"
    rb"INFO: Created TensorFlow Lite XNNPACK delegate)"
)


def is_noise(line: bytes) -> bool:
    return NOISE.match(line) is not None


def filter_native_stderr() -> threading.Thread:
    """From now on, lines written to descriptor 2 (by any thread or library) pass through a filter
    thread that drops the known noise; returns that thread (a daemon)."""
    sys.stderr.flush()
    original, saved = os.dup(2), os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def forward() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as pipe, os.fdopen(original, "wb", buffering=0) as out:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                out.write(b"".join(line + b"\n" for line in lines if not is_noise(line)))
            if pending and not is_noise(pending):
                out.write(pending)

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
