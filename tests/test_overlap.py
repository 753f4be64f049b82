"""The backbone beside the decoding (DEEPFAKE_OVERLAP_CHUNK, pipeline.Backbone) gives the sequential
path's answers, on the real parts: the seed videos (H.264), MediaPipe, the exported ONNX files on ONNX
Runtime. The demo model answers ~0.455 to everything, which would hide a crop's features put on
another frame's row, so the answers are compared on the sensitive test model
(testing/sensitive_model.py, residual branches at 0.2): one whose per-frame P(FAKE) spreads over
[0, 1] (its sequences saturate), one centred on whole sequences (its single frames saturate). A
comparison that could not see a mis-assembly would prove nothing: the last test reverses each
chunk's rows and checks that the same comparison fails. Errors and cancellation, in seconds with a
fake model: tests/unit/test_overlap_chunks.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from export.repository import export_repository
from preprocess_service.faces import FaceDetector
from preprocess_service.inference import make_backend
from preprocess_service.metrics import Metrics
from preprocess_service.pipeline import Analysis, Analyzer, Backbone
from preprocess_service.settings import TRITON_OVERLAP_CHUNK, Settings
from testing.sensitive_model import sensitive_model
from testing.server import post_file, running_service
from tests import media

BOUND = 1e-6
CHUNKS = (0, 1, TRITON_OVERLAP_CHUNK)  # sequential, a call per crop, the default with Triton


@pytest.fixture(scope="module")
def repositories(seed_videos, module_folder) -> dict[str, Path]:
    made = {}
    for centre_on in ("frames", "sequences"):
        made[centre_on] = module_folder(centre_on)
        export_repository(sensitive_model(seed_videos, centre_on=centre_on, residual_scale=0.2), made[centre_on])
    return made


@contextmanager
def analyzers(repository: Path) -> Iterator[Callable[[int, Path], Analysis]]:
    """``analyze(chunk, video)``: one backend, detector and pools shared by an Analyzer per chunk size."""
    settings = {chunk: Settings(model_repository=repository, history=False, overlap_chunk=chunk) for chunk in CHUNKS}
    backend = make_backend(settings[0])
    detector = FaceDetector(settings[0].face_model_path)
    pool, face_pool = ThreadPoolExecutor(2, "decode"), ThreadPoolExecutor(2, "faces")
    loop = asyncio.new_event_loop()
    try:
        made = {chunk: Analyzer(s, detector, backend, pool, Metrics(), face_pool) for chunk, s in settings.items()}
        yield lambda chunk, video: loop.run_until_complete(made[chunk].analyze(video))
    finally:
        loop.run_until_complete(backend.close())
        loop.close()
        pool.shutdown()
        face_pool.shutdown()
        detector.close()


def answers(analysis: Analysis) -> np.ndarray:
    """Every sampled frame's P(FAKE) (NaN without a face), then the sequence's."""
    frames = [np.nan if frame.p_fake is None else frame.p_fake for frame in analysis.frames]
    return np.array([*frames, analysis.verdicts["sequence"].p_fake])


def max_delta(a: np.ndarray, b: np.ndarray) -> float:
    assert np.array_equal(np.isnan(a), np.isnan(b))  # the same frames without a face
    return float(np.nanmax(np.abs(a - b)))


@pytest.mark.parametrize("centre_on", ["frames", "sequences"])
def test_overlapped_chunks_give_the_sequential_answers_on_every_seed_video(repositories, seed_videos, centre_on):
    spread = []
    with analyzers(repositories[centre_on]) as analyze:
        for video in seed_videos:
            sequential = analyze(0, video)
            reference = answers(sequential)
            spread.append(reference)
            for chunk in CHUNKS[1:]:
                overlapped = analyze(chunk, video)
                assert overlapped.faces.positions == sequential.faces.positions
                assert max_delta(answers(overlapped), reference) <= BOUND, (video.name, chunk)
                assert overlapped.timings["total"] == pytest.approx(
                    overlapped.timings["front"] + overlapped.timings["inference"]
                )
    # not vacuous: what this model is centred on varies, so a feature on the wrong row would show
    if centre_on == "frames":
        assert all(np.nanmax(a[:-1]) - np.nanmin(a[:-1]) > 0.3 for a in spread)
    else:
        assert np.ptp([a[-1] for a in spread]) > 0.5


def test_the_comparison_fails_when_a_chunk_is_assembled_in_the_wrong_order(repositories, seed_videos, monkeypatch):
    """Each call's feature rows given to its positions reversed: the comparison above must see it."""
    call = Backbone._call

    async def reversed_rows(self, positions: list[int], crops: np.ndarray) -> None:
        await call(self, positions[::-1], crops)

    with analyzers(repositories["frames"]) as analyze:
        video = seed_videos[0]
        reference = answers(analyze(0, video))
        monkeypatch.setattr(Backbone, "_call", reversed_rows)
        assert max_delta(answers(analyze(CHUNKS[-1], video)), reference) > 0.05


def test_the_service_with_the_overlap_answers_and_still_refuses_a_video_without_a_face(
    repositories, seed_videos, tmp_path
):
    coffee = media.write_video(tmp_path / "coffee.mp4", [media.no_face()] * 12)
    assert Settings().backbone_chunk == 0 and Settings(backend="triton-grpc").backbone_chunk == TRITON_OVERLAP_CHUNK
    settings = Settings(
        model_repository=repositories["frames"], keys_dir=tmp_path / "keys", history=False, overlap_chunk=8
    )
    with running_service(settings) as url:
        refused = post_file(url, coffee)
        answered = post_file(url, seed_videos[2])
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "no_face_detected"
    assert answered.status_code == 200
    stages = answered.json()["stage_times_sec"]
    assert stages["front"] == pytest.approx(stages["decode"] + stages["faces"], abs=1e-3)
    assert stages["total"] == pytest.approx(stages["front"] + stages["inference"], abs=1e-3)
    assert stages["model"] > 0
