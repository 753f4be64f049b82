"""The front service end to end over real HTTP: real videos, real faces, real ONNX Runtime."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx
import pytest

from preprocess_service.settings import Settings
from testing.server import post_file, running_service
from tests import media


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def service(demo_repository, upload_dir, tmp_path_factory) -> str:
    settings = Settings(
        model_repository=demo_repository,
        upload_dir=upload_dir,
        keys_dir=tmp_path_factory.mktemp("keys"),
        max_upload_mb=5,
    )
    with running_service(settings) as url:
        yield url


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    return {
        "face": media.moving_face_video(folder / "astronaut.mp4", count=40),
        "odd": media.moving_face_video(folder / "odd.mp4", count=12, size=(203, 157)),
        "no_face": media.write_video(folder / "coffee.mp4", [media.no_face()] * 12),
        "one_frame": media.write_video(folder / "one.mp4", [media.astronaut((256, 256))]),
        "tiny": media.write_video(folder / "tiny.mp4", [media.astronaut((16, 16))] * 10),
        "audio": media.audio_only(folder / "audio.mp4"),
        "zero_size": media.zero_size_video(folder / "zero.mkv"),
    }


@pytest.mark.parametrize(
    "name",
    [
        "VIDEO_11_HD_SHORT.MOV",
        "VIDEO_29_HD_SHORT.mp4",
        "VIDEO_32_HD_SHORT.mp4",
        "VIDEO_35_HD_SHORT.mp4",
        "VIDEO_40_HD_SHORT.mp4",
    ],
)
def test_seed_video_prediction(service, seed_videos, name):
    path = next(p for p in seed_videos if p.name == name)
    response = post_file(service, path)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["result"] in ("FAKE", "REAL") and body["filename"] == name
    assert (body["result"] == "FAKE") == (body["p_fake"] >= 0.5)
    assert 50 <= body["confidence"] <= 100
    assert body["frames_analyzed"] == 30 and len(body["frames_csv_indices"]) == 30
    assert body["frames_with_face"] >= 20, "faces are found on most sampled frames (25 to 30 here)"
    shown = [body["frames_csv_indices"][i] for i in (0, 10, 20, 29)]  # the original's display frames
    assert [frame["frame_index"] for frame in body["frames_for_display"]] == shown
    assert {face["frame_index"] for face in body["cropped_faces"]} <= set(shown)
    assert all(frame["url"] is None for frame in body["frames_for_display"])  # no artifacts by default
    model = body["model"]
    assert (model["family"], model["untrained_demo"], model["backend"]) == ("attention", True, "embedded")
    assert model["checkpoint_sha256"] == "none (untrained demo, seed 0)"
    assert model["preprocessing"] == {
        "name": "attention-default",
        "crop": "face",
        "size": 180,
        "resize": "pil_bilinear",
        "channel_order": "rgb",
        "normalisation": "imagenet",
    }
    assert model["architecture"]["num_heads"] == "4" and model["architecture"]["activation"] == "gelu"
    assert set(body["verdicts"]) == {"sequence", "original"} and body["verdict_rule"] == "sequence"
    assert body["result"] == body["verdicts"]["sequence"]["result"]
    stages = body["stage_times_sec"]
    assert stages["total"] >= stages["decode"] + stages["faces"] + stages["inference"] - 1e-3
    metadata = body["metadata"]
    assert metadata["video_codec"] == "h264" and metadata["file_size"] == path.stat().st_size
    if name.endswith(".MOV"):  # the rotated iPhone file: displayed portrait, metadata from QuickTime tags
        assert (metadata["width"], metadata["height"], metadata["rotation"]) == (360, 480, -90)
        assert (metadata["make"], metadata["model"]) == ("Apple", "iPhone 11")
        assert metadata["nb_frames"] == 239 and body["frames_with_face"] == 30


def test_predict_csv_json_and_csv_agree(service, seed_videos):
    path = seed_videos[0]
    as_json = post_file(service, path, "/predict_csv/").json()
    rows = as_json["frames_csv"]
    assert as_json["filename"] == path.name and len(rows) == 30
    assert [row["frame_index"] for row in rows] == sorted(row["frame_index"] for row in rows)
    by_header = post_file(service, path, "/predict_csv/", headers={"Accept": "text/csv"})
    by_query = post_file(service, path, "/predict_csv/?format=csv")
    for response in (by_header, by_query):
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(response.text)))
        assert len(table) == 30
        assert [int(r["frame_index"]) for r in table] == [r["frame_index"] for r in rows]
        assert [r["label"] for r in table] == [r["label"] for r in rows]
        assert {r["model_preprocessing"] for r in table} == {"attention-default"}
        assert {r["model_untrained_demo"] for r in table} == {"true"}
        assert "num_heads=4" in table[0]["model_architecture"]
    assert as_json["model"]["preprocessing"]["name"] == "attention-default"


def test_display_frames_carry_the_same_scores_as_the_csv(service, videos):
    prediction = post_file(service, videos["face"]).json()
    frames = {
        row["frame_index"]: row for row in post_file(service, videos["face"], "/predict_csv/").json()["frames_csv"]
    }
    for shown in prediction["frames_for_display"]:
        assert shown["p_fake"] == pytest.approx(frames[shown["frame_index"]]["p_fake"], abs=1e-6)


def test_synthetic_face_video_finds_the_face_on_every_frame(service, videos):
    body = post_file(service, videos["face"]).json()
    assert body["frames_with_face"] == 30 and body["metadata"]["nb_frames"] == 40
    assert {face["detector"] for face in body["cropped_faces"]} == {"mediapipe"}
    x, y, w, h = body["cropped_faces"][0]["box"]
    assert 60 <= w <= 200 and 60 <= h <= 200  # the astronaut's face, not the whole frame


@pytest.mark.parametrize("portrait", [True, False], ids=["portrait", "landscape"])
@pytest.mark.parametrize("width", [270, 290, 360, 540, 854, 1080])
def test_mediapipe_finds_the_face_at_phone_widths(service, tmp_path, width, portrait):
    """Widths whose RGB rows the decoder pads: MediaPipe must get contiguous frames, or it sees no face
    and the Haar fallback answers (boxes on torsos and legs)."""
    video = media.phone_sized_video(tmp_path / f"{width}.mp4", width, portrait)
    response = post_file(service, video, "/predict_csv/")
    assert response.status_code == 200, response.text
    assert [row["detector"] for row in response.json()["frames_csv"]] == ["mediapipe"] * 30


def test_odd_frame_size_is_analyzed(service, videos):
    response = post_file(service, videos["odd"])
    assert response.status_code == 200, response.text
    assert response.json()["metadata"]["width"] == 202  # H.264 4:2:0 stores even sides


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("empty", 400, "empty_file"),
        ("text", 415, "not_a_video"),
        ("truncated", 422, "unreadable_video"),
        ("audio", 422, "no_video_stream"),
        ("one_frame", 422, "too_few_frames"),
        ("no_face", 422, "no_face_detected"),
        ("tiny", 422, "no_face_detected"),
        ("zero_size", 422, "unreadable_video"),
        ("too_large", 413, "file_too_large"),
    ],
)
def test_bad_input_gets_its_code_and_leaves_no_file(service, videos, seed_videos, upload_dir, case, status, code):
    payloads = {
        "empty": b"",
        "text": b"this is a text file named like a video\n" * 10,
        "truncated": seed_videos[1].read_bytes()[: seed_videos[1].stat().st_size // 2],
        "too_large": b"\0" * (6 * 1024 * 1024),
    }
    payload = payloads[case] if case in payloads else videos[case].read_bytes()
    response = post_file(service, payload, filename="clip.mp4")
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert "/tmp" not in response.text and "upload-" not in response.text
    assert list(upload_dir.iterdir()) == []


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"files": {"video": ("clip.mp4", b"data")}},  # wrong field name
        {"data": {"file": "not a file part"}},  # a text field, not a file
        {"json": {"file": "clip.mp4"}},  # not multipart at all
    ],
)
def test_wrong_form_fields_are_422(service, request_kwargs, upload_dir):
    response = httpx.post(service + "/predict/", timeout=30, **request_kwargs)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert list(upload_dir.iterdir()) == []


def test_health_readiness_and_metrics(service, videos):
    assert httpx.get(service + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(service + "/readyz")
    assert ready.status_code == 200 and ready.json()["untrained_demo"] is True
    assert ready.json()["model"]["preprocessing"]["name"] == "attention-default"
    assert ready.json()["verdict_rule"] == "sequence"
    post_file(service, videos["face"])
    metrics = httpx.get(service + "/metrics").text
    assert 'deepfake_requests_total{route="/predict/",status="200"}' in metrics
    assert 'deepfake_stage_seconds_count{stage="decode"}' in metrics
    assert "deepfake_backbone_batch_size_bucket" in metrics


def test_openapi_documents_the_upload_fields(service):
    spec = httpx.get(service + "/openapi.json").json()
    body = spec["paths"]["/integrity/verify"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["required"] == ["file"]  # and one of the two signature fields:
    assert body["anyOf"] == [{"required": ["attestation"]}, {"required": ["signature_base64"]}]
    assert "/predict/" in spec["paths"] and "/predict_csv/" in spec["paths"]


def test_the_service_never_imports_torch(demo_repository, tmp_path):
    """Serving needs ONNX Runtime or tritonclient only; torch stays in the export environment."""
    import subprocess
    import sys

    script = (
        "import asyncio, importlib, pkgutil, sys, preprocess_service as p\n"
        "for m in pkgutil.walk_packages(p.__path__, 'preprocess_service.'): importlib.import_module(m.name)\n"
        "from preprocess_service.inference import make_backend\n"
        "from preprocess_service.settings import Settings\n"
        "info = asyncio.run(make_backend(Settings()).start())\n"
        "assert info.family == 'attention', info\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    env = {
        **__import__("os").environ,
        "DEEPFAKE_MODEL_REPOSITORY": str(demo_repository),
        "DEEPFAKE_KEYS_DIR": str(tmp_path),
    }
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
