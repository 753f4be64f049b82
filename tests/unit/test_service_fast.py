"""The whole service in-process with the fake backend (testing/fake_backend.py): real decoding,
faces, crops, scoring, receipts, history and routes; only the exported models are replaced, so a
route or the prediction service can be checked in seconds. The integration tests run the models.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from preprocess_service.access import hash_key
from preprocess_service.app import create_app
from preprocess_service.machine import WATCHED_FLAGS
from preprocess_service.settings import Settings
from testing.fake_backend import CHECKPOINT, FakeBackend
from tests import media

KEYS = {"a": "key-a", "b": "key-b"}


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return media.moving_face_video(tmp_path_factory.mktemp("video") / "face.mp4", count=30).read_bytes()


def settings_in(folder: Path, **overrides: object) -> Settings:
    options: dict = {
        "database_url": f"sqlite:///{folder}/history.sqlite3",
        "keys_dir": folder / "keys",
        "history_cache": True,
        **overrides,
    }
    return Settings(**options)


@pytest.fixture
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def client(tmp_path: Path, backend: FakeBackend) -> Iterator[TestClient]:
    keys = ",".join(f"{name}:{hash_key(key)}" for name, key in KEYS.items())
    with TestClient(create_app(settings_in(tmp_path, api_keys=keys), backend=backend)) as client:
        yield client


def upload(client: TestClient, content: bytes, path: str = "/predict/", key: str | None = "a", **kwargs):
    headers = {"X-API-Key": KEYS[key]} if key else {}
    return client.post(path, files={"file": ("face.mp4", content)}, headers=headers, **kwargs)


def test_an_answer_has_every_frame_both_verdicts_and_the_model(client, backend, video):
    answer = upload(client, video).json()
    assert answer["frames_analyzed"] == 30 and len(answer["frames"]) == 30
    assert set(answer["verdicts"]) == {"sequence", "original"}
    assert answer["model"]["checkpoint_sha256"] == CHECKPOINT and answer["model"]["backend"] == "fake"
    assert [frame["frame_index"] for frame in answer["frames_for_display"]] == answer["verdicts"]["original"][
        "frame_indices"
    ]
    assert answer["history_id"] and answer["cached"] is False
    # the backbone in chunks beside the decoding (DEEPFAKE_OVERLAP_CHUNK), each distinct crop once; then the head
    backbone = [shape for model, shape in backend.calls if model == "backbone"]
    assert [model for model, _ in backend.calls] == ["backbone"] * len(backbone) + ["temporal", "temporal"]
    assert sum(shape[0] for shape in backbone) == answer["frames_with_face"]


def test_the_cache_answers_its_owner_only_and_is_resigned(client, video):
    first = upload(client, video).json()
    again = upload(client, video).json()
    assert again["cached"] is True and again["history_id"] == first["history_id"]
    assert again["verdicts"] == first["verdicts"] and again["analyzed_at"] == first["analyzed_at"]
    other = upload(client, video, key="b").json()
    assert other["cached"] is False and other["history_id"] != first["history_id"]
    anonymous = upload(client, video, key=None).json()
    assert anonymous["cached"] is False and anonymous["history_id"] is None
    assert client.get("/analyses", headers={"X-API-Key": KEYS["b"]}).json()["total"] == 1
    assert client.get("/analyses").status_code == 401


def test_frame_scores_as_json_and_as_csv(client, video):
    as_json = upload(client, video, "/predict_csv/").json()
    as_csv = upload(client, video, "/predict_csv/?format=csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == len(as_json["frames_csv"]) == 30
    assert as_csv.headers["content-disposition"].startswith('attachment; filename="face_frames.csv"')
    assert as_csv.headers["x-deepfake-receipt"].count(".") == 2
    assert [float(row["p_fake"]) for row in rows if row["p_fake"]] == [
        frame["p_fake"] for frame in as_json["frames_csv"] if frame["p_fake"] is not None
    ]


def test_bad_input_gets_its_code(client):
    assert upload(client, b"").json()["error"]["code"] == "empty_file"
    not_video = upload(client, b"plain text, not a video" * 10)
    assert not_video.status_code == 415 and not_video.json()["error"]["code"] == "not_a_video"


def test_no_face_is_a_422(tmp_path, backend):
    frames = [media.no_face()[:256, :256]] * 12
    content = media.write_video(tmp_path / "cup.mp4", frames).read_bytes()
    with TestClient(create_app(settings_in(tmp_path), backend=backend)) as client:
        response = upload(client, content, key=None)
    assert response.status_code == 422 and response.json()["error"]["code"] == "no_face_detected"


def test_readiness_follows_the_backend_and_the_backend_is_closed(tmp_path):
    backend = FakeBackend(ready=False)
    with TestClient(create_app(settings_in(tmp_path), backend=backend)) as client:
        response = client.get("/readyz")
        assert response.status_code == 503 and response.json()["error"]["code"] == "backend_unavailable"
    assert backend.closed  # Services.open closed what it opened


def test_readiness_names_the_processor_and_its_instruction_sets(client):
    """A speed means nothing without the processor: /readyz says which one serves, and which of the
    instruction sets that change the figures (AMX, AVX-512 BF16, VNNI) it has, as /proc/cpuinfo says."""
    machine = client.get("/readyz").json()["machine"]
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split(":")[1].split()
    assert machine["processor"] and machine["cpus"] >= machine["usable_cpus"] >= 1
    assert machine["instruction_sets"] == [flag for flag in WATCHED_FLAGS if flag in flags]


def test_every_answer_says_at_its_top_whether_the_demo_model_answered(client, video):
    """The README says every answer carries untrained_demo; before, it was only inside ``model``."""
    answer = upload(client, video).json()
    assert answer["untrained_demo"] is True and answer["model"]["untrained_demo"] is True
    assert upload(client, video).json()["untrained_demo"] is True  # the cached answer too
    assert upload(client, video, "/predict_csv/").json()["untrained_demo"] is True


@pytest.mark.parametrize(("name", "options"), [("MPEG-TS", {}), ("MPEG-TS (M2TS)", {"mpegts_m2ts_mode": "1"})])
def test_mpeg_ts_recordings_are_analyzed(client, tmp_path, video, name, options):
    """Broadcast and camcorder recordings (.ts, .m2ts) were refused 415 before; their demuxer is
    forced like the others' (it reads only the stream itself)."""
    from preprocess_service.video import container_of

    source = tmp_path / "face.mp4"
    source.write_bytes(video)
    path = media.remux(source, tmp_path / "face.ts", "mpegts", options)
    detected = container_of(path)
    assert detected is not None and detected.name == name
    answer = upload(client, path.read_bytes())
    assert answer.status_code == 200, answer.text
    assert answer.json()["frames_analyzed"] == 30 and answer.json()["metadata"]["format"] == "mpegts"


def test_the_history_csv_is_the_csv_the_analysis_gave(client, video):
    """The presenter makes the CSV from a live analysis and from a stored answer: the same file."""
    answer = upload(client, video).json()
    live = upload(client, video, "/predict_csv/?format=csv").text
    stored = client.get(f"/analyses/{answer['history_id']}.csv", headers={"X-API-Key": KEYS["a"]})
    assert stored.status_code == 200 and stored.headers["content-type"].startswith("text/csv")
    assert stored.text == live and live.count("\n") == 31  # header + 30 frames


def test_the_history_lists_one_models_analyses_by_checkpoint_prefix_and_precision(client, video):
    """``GET /analyses?checkpoint_sha256=<prefix>&precision=fp32``: the 12 hex digits a listing shows
    find the model's rows, another model's prefix or precision finds none."""
    upload(client, video)
    headers = {"X-API-Key": KEYS["a"]}

    def listed(**filters: str) -> list[dict]:
        response = client.get("/analyses", params=filters, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    (row,) = listed(checkpoint_sha256=CHECKPOINT[:12], precision="fp32")
    assert row["checkpoint_sha256"] == CHECKPOINT and row["precision"] == "fp32"
    assert len(listed(checkpoint_sha256=CHECKPOINT)) == 1  # the whole hash too
    assert listed(checkpoint_sha256="0" * 12, precision="fp32") == []
    assert listed(checkpoint_sha256=CHECKPOINT[:12], precision="int8") == []
