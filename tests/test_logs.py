"""``deepfake-serve``'s log, read as an operator reads it: MediaPipe/LiteRT's native lines (a dozen
per request before: "Creating LiteRT environment", "Input tensor memory is not aligned…") are left
out by default, the service's own lines stay, and ``DEEPFAKE_THIRD_PARTY_LOGS=true`` brings the
native ones back (the same run shows they are there to be filtered)."""

from __future__ import annotations

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
