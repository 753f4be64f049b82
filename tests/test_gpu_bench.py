"""benchmarks/gpu_bench.sh on a machine without an NVIDIA GPU: a clean refusal, nothing written.

CI has no GPU; the GPU path itself runs only on a GPU host (README, "GPU"). Here the refusal is
checked with no ``nvidia-smi`` at all and with one that finds no device (a two-line stand-in for
the real binary, which cannot run without a driver), and the Python half refuses on its own too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "gpu_bench.json"


def _run(command: list[str], path: str) -> subprocess.CompletedProcess:
    before = RESULT.stat().st_mtime_ns if RESULT.exists() else None
    env = {**os.environ, "PATH": path}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert (RESULT.stat().st_mtime_ns if RESULT.exists() else None) == before  # nothing written
    return done


@pytest.mark.parametrize("nvidia_smi", ["absent", "finds no device"])
def test_gpu_bench_refuses_cleanly_without_a_gpu(tmp_path, nvidia_smi):
    tools = tmp_path / "bin"
    tools.mkdir()
    if nvidia_smi != "absent":
        stub = tools / "nvidia-smi"
        stub.write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
        stub.chmod(0o755)
    path = os.pathsep.join([str(tools), "/usr/bin", "/bin"])
    done = _run(["bash", "benchmarks/gpu_bench.sh"], path)
    assert done.returncode == 3, done.stderr
    assert "no NVIDIA GPU" in done.stderr and "model_cpu.py" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_python_half_refuses_without_cuda():
    done = _run([sys.executable, "benchmarks/gpu_bench.py"], os.environ["PATH"])
    assert done.returncode == 3
    assert "no CUDA device" in done.stderr and "Traceback" not in done.stderr
