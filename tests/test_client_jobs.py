"""``deepfake-client jobs`` and the client's job calls against the real service over HTTP (jobs run by
its embedded worker on real videos): a batch saved to answers, a file refused at upload and a job
that failed reported with their codes, an interrupted batch resumed without submitting anything
twice, a CSV of relative paths, and one API key's job hidden from another's."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from deepfake_client import DeepfakeClient, ServiceError
from deepfake_client.__main__ import main
from preprocess_service.settings import Settings
from testing.server import running_service
from tests import media

# one key per test: each test counts only its own jobs on the service
KEYS = {name: f"key-of-{name}-" + name[0] * 24 for name in ("batch", "resume", "csv", "a", "b")}
POLL = ["--poll", "0.2"]  # the service's rate limit is raised for the tests


@pytest.fixture(scope="module")
def service(demo_repository, tmp_path_factory):
    folder = tmp_path_factory.mktemp("client-jobs")
    settings = Settings(
        model_repository=demo_repository,
        keys_dir=folder / "keys",
        database_url=f"sqlite:///{folder}/history.sqlite3",
        jobs_dir=folder / "jobs",
        rate_limit="100000/minute",
        api_keys=",".join(f"{name}:{hashlib.sha256(key.encode()).hexdigest()}" for name, key in KEYS.items()),
    )
    with running_service(settings) as url:
        yield url


def run(capsys, service: str, key: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--url", service, "--api-key", KEYS[key], *argv])
    out, err = capsys.readouterr()
    return code, out, err


def state_of(path: Path) -> dict[str, dict]:
    return {entry["path"]: entry for entry in json.loads(path.read_text())["files"]}


def total_jobs(service: str, key: str) -> int:
    with DeepfakeClient(service, KEYS[key]) as client:
        return client.jobs(per_page=200)["total"]


def test_a_folder_as_jobs_answers_saved_and_the_failed_ones_reported(service, seed_videos, tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for video in seed_videos[:3]:
        shutil.copyfile(video, videos / video.name)
    (videos / "notes.mp4").write_bytes(b"hello, not a video" * 100)  # a video by its name only: refused at upload
    media.write_video(videos / "coffee.mp4", [media.no_face()] * 25)  # a video: accepted, and the job fails
    (videos / "readme.txt").write_text("not sent without --all-files")
    out_folder = tmp_path / "answers"

    code, out, err = run(
        capsys, service, "batch", "jobs", "submit", str(videos), "--out", str(out_folder), *POLL, "--json"
    )

    outcomes = json.loads(out)
    assert code == 1, err
    names = [video.name for video in seed_videos[:3]] + ["notes.mp4", "coffee.mp4"]
    assert set(outcomes) == {str(videos / name) for name in names}
    assert "skipped 1 file" in err and "readme.txt" in err
    refused, failed = outcomes[str(videos / "notes.mp4")], outcomes[str(videos / "coffee.mp4")]
    assert refused["state"] == "refused" and refused["job_id"] is None and refused["answer"] is None
    assert refused["error"] == {"code": "not_a_video", "message": refused["error"]["message"], "status": 415}
    assert failed["state"] == "failed" and failed["error"]["code"] == "no_face_detected" and failed["result"] is None
    for video in seed_videos[:3]:
        outcome = outcomes[str(videos / video.name)]
        assert outcome["state"] == "done" and outcome["result"] in {"FAKE", "REAL"}
        answer = json.loads(Path(outcome["answer"]).read_text())
        assert answer["id"] == outcome["job_id"] and answer["state"] == "done"
        assert answer["sha256_hex"] == hashlib.sha256(video.read_bytes()).hexdigest()
        assert answer["result"]["result"] == outcome["result"] and answer["result"]["p_fake"] == outcome["p_fake"]
        timeline = answer["result"]["timeline"]
        assert timeline["frames"] and timeline["segments"] and outcome["flagged"] == len(timeline["flagged"])
    assert json.loads(Path(failed["answer"]).read_text())["error"]["code"] == "no_face_detected"
    state = state_of(out_folder / "state.json")  # the default state file: OUT/state.json
    assert sorted(entry["state"] for entry in state.values()) == ["done"] * 3 + ["failed", "refused"]
    assert all(entry["size"] == Path(path).stat().st_size for path, entry in state.items())
    assert total_jobs(service, "batch") == 4  # the refused file made no job


def test_an_interrupted_batch_resumes_without_submitting_twice(service, seed_videos, tmp_path, capsys, monkeypatch):
    videos = tmp_path / "videos"
    videos.mkdir()
    first, second = (videos / seed_videos[3].name, videos / seed_videos[4].name)
    shutil.copyfile(seed_videos[3], first)
    shutil.copyfile(seed_videos[4], second)
    state_file = tmp_path / "batch-state.json"
    command = ["jobs", "submit", str(videos), "--out", str(tmp_path / "out"), "--state", str(state_file), *POLL]

    submit = DeepfakeClient.submit_job
    calls = []

    def ctrl_c_at_the_second_upload(self, *args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(DeepfakeClient, "submit_job", ctrl_c_at_the_second_upload)
    code, _, err = run(capsys, service, "resume", *command)
    monkeypatch.undo()
    assert code == 130 and "the same command again resumes" in err
    interrupted = state_of(state_file)
    job_id = interrupted[str(first)]["job_id"]
    assert job_id and interrupted[str(first)]["state"] in {"queued", "running"}
    assert interrupted[str(second)]["job_id"] is None
    assert total_jobs(service, "resume") == 1

    code, out, err = run(capsys, service, "resume", *command)
    resumed = state_of(state_file)
    assert code == 0, err
    assert resumed[str(first)]["job_id"] == job_id  # polled again, not submitted again
    assert {entry["state"] for entry in resumed.values()} == {"done"}
    assert total_jobs(service, "resume") == 2  # one job per file: nothing was submitted twice
    assert first.name in out and "UNTRAINED DEMO" in out

    # once more: both finished, nothing sent; then one file changed and the other's job erased (its
    # answer deleted): both submitted again
    code, _, err = run(capsys, service, "resume", *command)
    assert code == 0 and "2 files already finished" in err and total_jobs(service, "resume") == 2
    shutil.copyfile(seed_videos[0], second)
    with DeepfakeClient(service, KEYS["resume"]) as client:
        assert client.cancel_job(job_id) == {"id": job_id, "state": "done", "erased": True}
    (tmp_path / "out" / resumed[str(first)]["answer"]).unlink()
    code, _, err = run(capsys, service, "resume", *command)
    again = state_of(state_file)
    assert code == 0, err
    assert "is not on" in err and again[str(first)]["job_id"] not in {None, job_id}
    assert again[str(second)]["sha256"] == hashlib.sha256(seed_videos[0].read_bytes()).hexdigest()
    assert again[str(second)]["job_id"] != resumed[str(second)]["job_id"]
    assert total_jobs(service, "resume") == 3  # 2, less the erased one, plus the 2 submitted again


def test_a_csv_of_relative_paths_same_names_in_two_folders(service, seed_videos, tmp_path, capsys):
    for folder, video in (("a", seed_videos[1]), ("b", seed_videos[2])):
        (tmp_path / "set" / folder).mkdir(parents=True)
        shutil.copyfile(video, tmp_path / "set" / folder / "clip.mp4")
    listing = tmp_path / "set" / "labels.csv"
    listing.write_text("path,label\na/clip.mp4,REAL\nb/clip.mp4,FAKE\n")
    out_folder = tmp_path / "out"

    code, out, err = run(capsys, service, "csv", "jobs", "submit", str(listing), "--out", str(out_folder), *POLL)

    assert code == 0, err
    assert str(tmp_path / "set" / "a" / "clip.mp4") in out and "done" in out and "failed" not in out
    answers = sorted(out_folder.glob("*.job.json"))
    assert [path.name for path in answers] == ["clip.job.json", "clip.mp4.job.json"]  # neither overwrote the other
    digests = {json.loads(path.read_text())["sha256_hex"] for path in answers}
    assert digests == {hashlib.sha256(video.read_bytes()).hexdigest() for video in seed_videos[1:3]}


def test_a_csv_without_a_header_and_a_missing_file(service, seed_videos, tmp_path, capsys):
    listing = tmp_path / "list.csv"
    listing.write_text(f"{seed_videos[0]}\nmissing.mp4\n")
    code, out, err = run(capsys, service, "csv", "jobs", "submit", str(listing), "--out", str(tmp_path / "out"))
    assert code == 1 and out == "" and err == f"error: no such file: {tmp_path / 'missing.mp4'}\n"
    assert not (tmp_path / "out").exists()  # refused before anything was written or sent


def test_a_refusal_every_file_would_meet_stops_the_batch(service, seed_videos, tmp_path, capsys, monkeypatch):
    submit, calls = DeepfakeClient.submit_job, []
    monkeypatch.setattr(DeepfakeClient, "submit_job", lambda self, *a, **k: calls.append(a) or submit(self, *a, **k))
    state_file = tmp_path / "state.json"
    code = main(["--url", service, "jobs", "submit", *map(str, seed_videos[:2]), "--state", str(state_file)])
    out, err = capsys.readouterr()  # no API key: 401 for the first file would be 401 for every file
    assert code == 1 and out == "" and err.startswith("error: 401 unauthorized") and len(calls) == 1
    assert [entry["job_id"] for entry in state_of(state_file).values()] == [None, None]


def test_another_keys_job_is_not_found(service, seed_videos, tmp_path, capsys):
    with DeepfakeClient(service, KEYS["a"]) as client:
        accepted = client.submit_job(seed_videos[4])
        seen: list[str] = []
        job = client.wait_job(accepted["id"], poll_s=0.2, timeout_s=120, on_progress=lambda v: seen.append(v["state"]))
    job_id = accepted["id"]
    assert accepted["state"] == "queued" and job["state"] == "done" and seen[-1] == "done"
    assert job["result"]["timeline"]["segments"]

    code, out, err = run(capsys, service, "b", "jobs", "status", job_id)
    assert code == 1 and out == "" and "404 not_found" in err
    code, out, err = run(capsys, service, "b", "jobs", "cancel", job_id)
    assert code == 1 and "404 not_found" in err
    code, out, _ = run(capsys, service, "b", "jobs", "list", "--json")
    assert code == 0 and json.loads(out)["total"] == 0

    code, out, _ = run(capsys, service, "a", "jobs", "status", job_id, "--json")
    assert code == 0 and json.loads(out)["result"]["p_fake"] == job["result"]["p_fake"]
    code, out, _ = run(capsys, service, "a", "jobs", "status", job_id)
    assert code == 0 and "done" in out and job["result"]["result"] in out
    code, out, _ = run(capsys, service, "a", "jobs", "list", "--state", "done")
    assert code == 0 and job_id in out and "1 in all" in out
    with DeepfakeClient(service, KEYS["b"]) as client, pytest.raises(ServiceError) as raised:
        client.job(job_id)
    assert raised.value.status == 404 and raised.value.code == "not_found"
