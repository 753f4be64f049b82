"""Same checkpoint, same answers: the service against the original's way, rebuilt in PyTorch.

The model reacts to its input (testing/sensitive_model.py: per-frame P(FAKE) spreads over most of
[0, 1]), so a wrong colour order, resize, box or padding shows. The reference is
``benchmarks/baseline_original.py``: OpenCV decoding, MediaPipe then Haar on full frames,
torchvision's PIL resize, PyTorch eager on one-frame sequences. The service runs over real HTTP on
the exported ONNX files.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.baseline_original import DISPLAY_POSITIONS, OriginalPipeline
from export.checkpoint import Options, load_checkpoint
from export.repository import export_repository
from model_contract import PROFILES
from preprocess_service.settings import Settings
from testing.sensitive_model import save_checkpoint, sensitive_model
from testing.server import post_file, running_service

PER_FRAME_BOUND = 0.01


@contextmanager
def serving(model, folder: Path):
    """The model saved as a user's checkpoint, exported as a user would, served over HTTP."""
    checkpoint = save_checkpoint(model, folder / "checkpoint.pth")
    loaded = load_checkpoint(checkpoint, options=Options(legacy_batch_first=False), preprocessing=model.preprocessing)
    export_repository(loaded, folder / "repository")
    with running_service(Settings(model_repository=folder / "repository", keys_dir=folder / "keys")) as url:
        yield url, loaded


def compare(url: str, reference: OriginalPipeline, video: Path) -> dict:
    expected = reference.analyze(video, with_sequence=True)
    served = post_file(url, video).json()
    rows = post_file(url, video, "/predict_csv/").json()["frames_csv"]
    assert [row["frame_index"] for row in rows] == [frame.frame_index for frame in expected.frames]
    same_detector = [
        (frame, row) for frame, row in zip(expected.frames, rows, strict=True) if frame.detector == row["detector"]
    ]
    return {
        "expected": expected,
        "served": served,
        "rows": rows,
        "same_detector": same_detector,
        "deltas": [abs(frame.p_fake - row["p_fake"]) for frame, row in same_detector],
    }


@pytest.fixture(scope="module")
def attention_per_frame(seed_videos, module_folder):
    model = sensitive_model(seed_videos, centre_on="frames")
    reference = OriginalPipeline(model)
    with serving(model, module_folder("fidelity_frames")) as (url, _):
        yield {video.name: compare(url, reference, video) for video in seed_videos}
    reference.close()


def test_the_test_model_reacts_to_its_input(attention_per_frame):
    scores = [row["p_fake"] for result in attention_per_frame.values() for row in result["rows"] if row["p_fake"]]
    assert max(scores) - min(scores) >= 0.2, "a model that answers the same to every face proves nothing"


def test_per_frame_scores_match_the_original_where_the_same_detector_fired(attention_per_frame):
    for name, result in attention_per_frame.items():
        assert len(result["same_detector"]) >= 25, name  # MediaPipe on all but a few frames
        assert max(result["deltas"]) <= PER_FRAME_BOUND, (name, max(result["deltas"]))


def test_mediapipe_boxes_are_identical(attention_per_frame):
    for name, result in attention_per_frame.items():
        for frame, row in result["same_detector"]:
            if frame.detector == "mediapipe":
                assert tuple(row["box"]) == frame.box, (name, frame.frame_index)


def test_the_original_verdict_rule_gives_the_original_answer(attention_per_frame):
    for name, result in attention_per_frame.items():
        expected, verdict = result["expected"], result["served"]["verdicts"]["original"]
        assert verdict["result"] == expected.result, name
        shown = [expected.frames[i] for i in DISPLAY_POSITIONS]
        assert verdict["frame_indices"] == [f.frame_index for f in shown if f.detector != "centre"], name
        if all(frame.detector != "centre" for frame in shown):  # the original scored a centre crop where no face was
            assert verdict["confidence"] == pytest.approx(expected.confidence, abs=0.5), name
        assert [f["frame_index"] for f in result["served"]["frames_for_display"]] == sorted(
            {frame.frame_index for frame in shown}
        ), "the original's display frames"


def test_sequence_verdict_matches_the_model_over_the_same_faces(seed_videos, tmp_path):
    model = sensitive_model(seed_videos, centre_on="sequences")
    reference = OriginalPipeline(model)
    with serving(model, tmp_path) as (url, _):
        results = []
        for video in seed_videos:
            expected = reference.analyze(video, with_sequence=True).sequence_p_fake
            body = post_file(url, video).json()
            assert body["verdict_rule"] == "sequence" and body["p_fake"] == body["verdicts"]["sequence"]["p_fake"]
            results.append((expected, body["verdicts"]["sequence"]["p_fake"]))
    reference.close()
    assert max(e for e, _ in results) - min(e for e, _ in results) >= 0.2, results
    for expected, served in results:
        assert served == pytest.approx(expected, abs=PER_FRAME_BOUND)
        assert (served >= 0.5) == (expected >= 0.5)


@pytest.mark.parametrize("profile_name", ["legacy-default", "original-legacy-app"])
def test_legacy_profiles_match_their_reference(seed_videos, tmp_path, profile_name):
    profile = PROFILES[profile_name]
    model = sensitive_model(seed_videos[:3], family="legacy", profile=profile)
    reference = OriginalPipeline(model, legacy_app=profile.crop == "full_frame")
    with serving(model, tmp_path) as (url, loaded):
        assert loaded.preprocessing == profile
        for video in seed_videos[:3]:
            result = compare(url, reference, video)
            assert result["served"]["model"]["preprocessing"]["name"] == profile_name
            if profile.crop == "full_frame":  # every frame is scored, face or not
                pairs = list(zip(result["expected"].frames, result["rows"], strict=True))
                deltas = [abs(frame.p_fake - row["p_fake"]) for frame, row in pairs]
            else:
                deltas = result["deltas"]
            assert len(deltas) >= 25 and max(deltas) <= PER_FRAME_BOUND, (video.name, max(deltas))
    reference.close()
