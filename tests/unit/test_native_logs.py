"""Which native lines the stderr filter drops: exactly the known MediaPipe/LiteRT noise."""

from __future__ import annotations

import pytest

from preprocess_service.native_logs import is_noise

NOISE = [
    b"INFO: [environment.cc:36] Creating LiteRT environment with options",
    b"INFO: [accelerator_registry.cc:54] RegisterAccelerator: ptr=0x7f4a40004860, name=GPU WebGPU",
    b"WARNING: Logging before InitGoogle() is written to STDERR",
    b"W0000 00:00:1796161287.869358   17649 inference_runner_litert.cc:1418] Input tensor memory is not aligned "
    b"according to LiteRt's memory alignment requirements. Reallocating memory and copying data.",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
]
KEPT = [
    b'INFO:     127.0.0.1:50432 - "POST /predict/ HTTP/1.1" 200 OK',
    b"INFO:     Application startup complete.",
    b"ERROR:    Exception in ASGI application",
    b"Traceback (most recent call last):",
    b"history save failed: OperationalError('database is locked')",
    b"E0000 00:00:1796161287.869358   17649 inference_runner_litert.cc:99] a real error",
]


@pytest.mark.parametrize("line", NOISE)
def test_known_noise_is_dropped(line: bytes) -> None:
    assert is_noise(line)


@pytest.mark.parametrize("line", KEPT)
def test_everything_else_passes(line: bytes) -> None:
    assert not is_noise(line)
