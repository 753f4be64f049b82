"""The backbone beside the decoding (pipeline.Backbone, DEEPFAKE_OVERLAP_CHUNK), in seconds: real
decoding, MediaPipe and crops, the model replaced by testing/fake_backend.py (per-crop arithmetic, so
a crop scored twice, missed or put on another frame's row changes an answer), slowed or failing
where a test needs a call in flight. What it checks: the same answers and each distinct crop once
whatever the chunk, and errors and cancellation as on the sequential path, with no task left behind.
The real model and videos: tests/test_overlap.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from preprocess_service.errors import BackendUnavailable, DecodeBudgetExceeded, NoFaceDetected
from preprocess_service.faces import FaceDetector
from preprocess_service.metrics import Metrics
from preprocess_service.pipeline import Analysis, Analyzer
from preprocess_service.settings import Settings
from testing.fake_backend import FakeBackend
from tests import media


class SlowBackend(FakeBackend):
    """Backbone calls that take ``delay`` seconds (a call stays in flight), the ``fail_on``-th failing."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        super().__init__()
        self.delay, self.fail_on = delay, fail_on
        self.started = self.cancelled = 0

    async def features(self, faces: np.ndarray) -> np.ndarray:
        self.started += 1
        if self.started == self.fail_on:
            raise BackendUnavailable("the backbone is down")
        try:
            await asyncio.sleep(self.delay)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return await super().features(faces)

    def backbone_sizes(self) -> list[int]:
        return [shape[0] for model, shape in self.calls if model == "backbone"]


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("overlap")
    return {
        "face": media.moving_face_video(folder / "face.mp4", count=40),
        "short": media.moving_face_video(folder / "short.mp4", count=12),  # 30 samples of 12 frames: repeats
        "no_face": media.write_video(folder / "coffee.mp4", [media.no_face()] * 12),
    }


@pytest.fixture(scope="module")
def parts() -> Iterator[tuple[FaceDetector, ThreadPoolExecutor, ThreadPoolExecutor]]:
    detector = FaceDetector(Settings().face_model_path)
    pool, face_pool = ThreadPoolExecutor(2, "decode"), ThreadPoolExecutor(2, "faces")
    yield detector, pool, face_pool
    pool.shutdown()
    face_pool.shutdown()
    detector.close()


def analyze(parts, video: Path, backend: FakeBackend, **settings: object) -> Analysis:
    detector, pool, face_pool = parts
    analyzer = Analyzer(Settings(history=False, **settings), detector, backend, pool, Metrics(), face_pool)  # type: ignore[arg-type]

    async def run() -> Analysis:
        try:
            return await analyzer.analyze(video)
        finally:
            assert asyncio.all_tasks() == {asyncio.current_task()}  # no chunk task left, answer or error

    return asyncio.run(run())


def answers(analysis: Analysis) -> tuple[list[float | None], float]:
    return [frame.p_fake for frame in analysis.frames], analysis.verdicts["sequence"].p_fake


@pytest.mark.parametrize("name", ["face", "short"])
def test_every_chunk_size_gives_the_sequential_answers_with_each_distinct_crop_once(parts, videos, name):
    sequential = analyze(parts, videos[name], SlowBackend(), overlap_chunk=0)
    assert len(sequential.faces.positions) == (30 if name == "face" else 12)
    for chunk in (1, 4, 8, 30):
        backend = SlowBackend(delay=0.02)  # crops keep coming while a call is in flight
        overlapped = analyze(parts, videos[name], backend, overlap_chunk=chunk)
        assert answers(overlapped) == answers(sequential), chunk
        assert overlapped.faces.positions == sequential.faces.positions
        sizes = backend.backbone_sizes()
        assert sum(sizes) == len(sequential.faces.positions)  # each distinct crop once, repeats not re-scored
        assert all(size >= chunk for size in sizes[:-1])  # only the last call (after decoding) may be smaller
        assert [model for model, _ in backend.calls][len(sizes) :] == ["temporal", "temporal"]  # the head last, once
        timings = overlapped.timings
        assert {"decode", "faces", "inference", "total", "front", "model"} <= set(timings)
        assert timings["total"] == pytest.approx(timings["decode"] + timings["faces"] + timings["inference"])
        assert timings["front"] == pytest.approx(timings["decode"] + timings["faces"])


def test_no_face_is_still_no_face_detected_after_decoding_and_no_model_call(parts, videos):
    for chunk in (0, 1, 8):
        backend = SlowBackend()
        with pytest.raises(NoFaceDetected, match="no face was found in any of the 12 sampled frames"):
            analyze(parts, videos["no_face"], backend, overlap_chunk=chunk)
        assert backend.calls == []


def test_a_decode_error_after_chunks_were_sent_is_raised_as_before_and_the_call_in_flight_cancelled(parts, videos):
    errors = []
    for chunk in (0, 2):
        backend = SlowBackend(delay=30)  # never ends by itself: the analysis must cancel it
        with pytest.raises(DecodeBudgetExceeded) as raised:
            analyze(parts, videos["face"], backend, overlap_chunk=chunk, max_decoded_frames=20)
        errors.append(str(raised.value))
        assert (backend.started, backend.cancelled) == ((0, 0) if chunk == 0 else (1, 1))
    assert errors[0] == errors[1]


def test_a_failed_chunk_raises_the_backends_error_once_decoding_is_done(parts, videos):
    for chunk in (0, 1, 4):
        backend = SlowBackend(fail_on=1)
        with pytest.raises(BackendUnavailable, match="the backbone is down"):
            analyze(parts, videos["face"], backend, overlap_chunk=chunk)
        assert backend.started == 1  # no call after the failed one


def test_a_cancelled_analysis_cancels_its_call_in_flight_and_leaves_no_task(parts, videos):
    detector, pool, face_pool = parts
    backend = SlowBackend(delay=30)
    analyzer = Analyzer(Settings(history=False, overlap_chunk=1), detector, backend, pool, Metrics(), face_pool)

    async def run() -> None:
        analysis = asyncio.create_task(analyzer.analyze(videos["face"]))
        while backend.started == 0:
            await asyncio.sleep(0.01)
        analysis.cancel()
        with pytest.raises(asyncio.CancelledError):
            await analysis
        assert backend.cancelled == 1
        await asyncio.sleep(0.5)  # the decode thread goes on cutting: its crops are dropped, no call made
        assert backend.started == 1 and asyncio.all_tasks() == {asyncio.current_task()}

    asyncio.run(run())
