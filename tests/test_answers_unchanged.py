"""The same answers on the seed videos, byte for byte, minus what changes with every request (times,
ids, the receipt's issue time): a refactoring that changes an answer fails here.

The reference, tests/data/seed_answers.json, was written by the service as it was before the
prediction service and the layers were restructured (issue 19); a change that is meant to alter
answers rewrites it on purpose: ``DEEPFAKE_WRITE_SEED_ANSWERS=1 pytest tests/test_answers_unchanged.py``.
"""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import httpx

from preprocess_service.settings import Settings
from testing.server import running_service

REFERENCE = Path(__file__).parent / "data" / "seed_answers.json"
VOLATILE = ("processing_time_sec", "stage_times_sec", "analyzed_at", "history_id", "receipt")


def comparable(answer: dict) -> dict:
    """The answer without what differs between two identical requests; the receipt's claims kept."""
    payload = answer["receipt"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims = {key: value for key, value in claims.items() if key not in ("iat", "analysis_id")}
    return {**{key: value for key, value in answer.items() if key not in VOLATILE}, "receipt_claims": claims}


def test_seed_video_answers_are_unchanged(demo_repository, seed_videos, tmp_path):
    settings = Settings(model_repository=demo_repository, keys_dir=tmp_path / "keys", history=False)
    with running_service(settings) as url:
        answers = {}
        for video in seed_videos:
            response = httpx.post(url + "/predict/", files={"file": (video.name, video.read_bytes())}, timeout=120)
            assert response.status_code == 200, response.text
            answers[video.name] = comparable(response.json())
    if os.environ.get("DEEPFAKE_WRITE_SEED_ANSWERS") == "1":
        REFERENCE.write_text(json.dumps(answers, indent=1, sort_keys=True) + "\n")
    assert json.dumps(answers, indent=1, sort_keys=True) + "\n" == REFERENCE.read_text()
