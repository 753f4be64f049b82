"""The machine this runs on: processor model and the instruction sets that change the figures
(machines of one kind differ: AMX on some, Zen 4 on others). Recorded in every benchmark's result
and shown by ``/readyz``, so a speed is never quoted without the processor that gave it."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path

WATCHED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


@cache
def machine_facts() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {
        "processor": model,
        "cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "instruction_sets": [flag for flag in WATCHED_FLAGS if flag in flags],
        "python": platform.python_version(),
    }
