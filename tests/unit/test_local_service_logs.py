"""The service ``deepfake-eval`` starts in its own process (evaluation/local_service.py) keeps
MediaPipe/LiteRT's native log noise out as ``deepfake-serve`` does, and
``DEEPFAKE_THIRD_PARTY_LOGS=true`` lets it through. (Before, every frame's "Input tensor memory is
not aligned…" reached the evaluation's terminal.) Run in a child process: the filter takes over
descriptor 2 for the rest of the process, and here pytest's capture owns it. The app is an empty
one (no model): only what local_service does around it is under test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOISE = (
    b"W0000 00:00:1796161287.869358   17649 inference_runner_litert.cc:1418] Input tensor memory is not aligned"
    b" according to LiteRt's memory alignment requirements. Reallocating memory and copying data."
)
KEPT = b"history save failed: OperationalError('database is locked')"
SCRIPT = f"""
import os
from fastapi import FastAPI
from evaluation import local_service
from preprocess_service.settings import Settings

local_service.create_app = lambda settings: FastAPI()
with local_service.local_service(Settings()):
    os.write(2, {NOISE!r} + b"\\n")
    os.write(2, {KEPT!r} + b"\\n")
"""


def _stderr_of_a_local_service(third_party_logs: str | None) -> bytes:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("DEEPFAKE_")}
    if third_party_logs is not None:
        environment["DEEPFAKE_THIRD_PARTY_LOGS"] = third_party_logs
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=environment, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stderr


@pytest.mark.parametrize("setting", [None, "false"])
def test_native_noise_is_dropped_and_the_rest_kept(setting: str | None) -> None:
    stderr = _stderr_of_a_local_service(setting)
    assert KEPT in stderr
    assert b"Input tensor memory is not aligned" not in stderr


def test_the_setting_lets_it_through() -> None:
    stderr = _stderr_of_a_local_service("true")
    assert KEPT in stderr and NOISE in stderr
