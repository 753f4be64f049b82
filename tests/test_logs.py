"""``deepfake-serve``'s log, read as an operator reads it: MediaPipe/LiteRT's native lines (a dozen
per request before: "Creating LiteRT environment", "Input tensor memory is not aligned…") are left
out by default, the service's own lines stay, and ``DEEPFAKE_THIRD_PARTY_LOGS=true`` brings the
native ones back (the same run shows they are there to be filtered)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest

from testing.server import serve_process
from tests import media

NATIVE = ("LiteRT", "accelerator_registry", "memory is not aligned", "InitGoogle")


def _served_once(repository: Path, folder: Path, video: Path, environment: dict[str, str]) -> str:
    folder.mkdir()
    with serve_process(repository, folder, environment) as url:
        answer = httpx.post(url + "/predict/", files={"file": ("face.mp4", video.read_bytes())}, timeout=120)
        assert answer.status_code == 200
    return "\n".join(path.read_text(errors="replace") for path in folder.glob("serve-*.log"))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return media.moving_face_video(tmp_path_factory.mktemp("logs") / "face.mp4", count=30)


def test_native_noise_is_left_out_and_the_service_lines_stay(demo_repository, video, tmp_path):
    quiet = _served_once(demo_repository, tmp_path / "quiet", video, {})
    assert not [line for line in quiet.splitlines() if any(word in line for word in NATIVE)]
    assert "Application startup complete" in quiet and "POST /predict/" in quiet  # uvicorn's own lines pass
    loud = _served_once(demo_repository, tmp_path / "loud", video, {"DEEPFAKE_THIRD_PARTY_LOGS": "true"})
    assert any(word in loud for word in NATIVE)


def test_json_lines_each_with_the_request_id_of_its_answer(demo_repository, video, tmp_path):
    """DEEPFAKE_LOG_FORMAT=json (the image's setting): every line one JSON object with time, level,
    logger and request_id; a request's lines carry the id its answer's X-Request-ID header gives
    (the caller's, or one made), and the history row keeps it."""
    folder = tmp_path / "json"
    folder.mkdir()
    with serve_process(demo_repository, folder, {"DEEPFAKE_LOG_FORMAT": "json"}) as url:
        files = {"file": ("face.mp4", video.read_bytes())}
        given = httpx.post(url + "/predict/", files=files, headers={"X-Request-ID": "case-7"}, timeout=120)
        made = httpx.post(url + "/predict/?refresh=1", files=files, timeout=120)
        hostile = httpx.get(url + "/healthz", headers={"X-Request-ID": "x" * 500 + " <script>"})
        listed = httpx.get(url + "/analyses").json()["items"]
    assert given.headers["x-request-id"] == "case-7" and given.status_code == 200
    made_id = made.headers["x-request-id"]
    assert len(made_id) == 32 and hostile.headers["x-request-id"] != "x" * 500  # a header not sane is replaced
    assert {item["request_id"] for item in listed} == {"case-7", made_id}
    lines = [json.loads(line) for line in (folder.glob("serve-*.log").__next__()).read_text().splitlines() if line]
    assert lines and all({"time", "level", "logger", "message", "request_id"} <= line.keys() for line in lines)
    assert all(datetime.fromisoformat(line["time"]).utcoffset() == timedelta(0) for line in lines)
    for request_id in ("case-7", made_id):
        mine = [line for line in lines if line["request_id"] == request_id]
        assert {"uvicorn.access", "deepfake.predictions"} <= {line["logger"] for line in mine}, mine
        assert any("POST /predict/" in line["message"] for line in mine)
