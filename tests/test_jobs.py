"""Asynchronous jobs, end to end on real parts: the service on a real socket, the real queue (Huey on
SQLite embedded, and on Debian's Redis with deepfake-worker processes), the real model backend, real
videos, a real webhook receiver."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from deploy.ports import free_port
from preprocess_service.settings import Settings
from testing.server import post_file, running_service
from tests import media

KEY_A, KEY_B = "key-of-a-" + "a" * 24, "key-of-b-" + "b" * 24


def api_keys() -> str:
    return ",".join(f"{name}:{hashlib.sha256(key.encode()).hexdigest()}" for name, key in (("a", KEY_A), ("b", KEY_B)))


def settings_for(repository: Path, folder: Path, **overrides) -> Settings:
    return Settings(
        model_repository=repository,
        keys_dir=folder / "keys",
        database_url=f"sqlite:///{folder}/history.sqlite3",
        jobs_dir=folder / "jobs",
        rate_limit="100000/minute",  # the tests poll several times a second
        **overrides,
    )


def wait_for(url: str, job_id: str, headers: dict | None = None, timeout_s: float = 300) -> tuple[dict, list[float]]:
    """Polls until the job is finished: its last view and every progress seen on the way."""
    seen: list[float] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = httpx.get(f"{url}/jobs/{job_id}", headers=headers, timeout=30).json()
        seen.append(view["progress"])
        if view["state"] in ("done", "failed", "cancelled"):
            return view, seen
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} not finished in {timeout_s} s: {view}")


def wait_until_running(url: str, job_id: str, timeout_s: float = 120) -> dict:
    """Polls until a worker has reported progress on the job: its view then."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        view = httpx.get(f"{url}/jobs/{job_id}").json()
        if view["state"] == "running" and view["progress"] > 0:
            return view
        time.sleep(0.05)
    return view


def test_a_job_answers_as_predict_does_plus_a_timeline(demo_repository, seed_videos, tmp_path):
    video = seed_videos[0]
    with running_service(settings_for(demo_repository, tmp_path)) as url:
        accepted = post_file(url, video, endpoint="/jobs")
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["id"]
        assert accepted.headers["location"] == f"/jobs/{job_id}"
        view, progress = wait_for(url, job_id)
        assert view["state"] == "done", view
        assert progress == sorted(progress) and progress[-1] == 1.0
        result = view["result"]
        direct = post_file(url, video, params={"refresh": "1"}).json()
        assert result["p_fake"] == pytest.approx(direct["p_fake"], abs=1e-6)
        assert result["frames"] == direct["frames"]
        verdict = post_file(url, video, "/integrity/verify-receipt", data={"receipt": result["receipt"]}).json()
        assert verdict["valid"], verdict
        timeline = result["timeline"]
        duration = timeline["duration_s"]
        assert len(timeline["frames"]) == min(int(duration * 2), 1800)
        assert timeline["segments"][0]["start_s"] == 0 and timeline["segments"][-1]["end_s"] == pytest.approx(
            duration, abs=0.6
        )
        assert all(s["faces"] > 0 and 0 <= s["p_fake"] <= 1 for s in timeline["segments"])
        assert not (tmp_path / "jobs" / "videos" / job_id).exists(), "the video is deleted once the job is done"
        listed = httpx.get(f"{url}/jobs").json()
        assert [item["id"] for item in listed["items"]] == [job_id] and "result" not in listed["items"][0]
        erased = httpx.delete(f"{url}/jobs/{job_id}").json()
        assert erased == {"id": job_id, "state": "done", "erased": True}
        assert httpx.get(f"{url}/jobs/{job_id}").status_code == 404


def test_jobs_belong_to_their_api_key(demo_repository, seed_videos, tmp_path):
    """Two callers and none: each sees only its own jobs; another's id is 404 (read, delete); no key, 401."""
    a, b = {"X-API-Key": KEY_A}, {"X-API-Key": KEY_B}
    settings = settings_for(demo_repository, tmp_path, api_keys=api_keys(), jobs_worker="off")
    settings = settings.model_copy(update={"jobs_worker": "external"})  # accepted and queued, never run here
    with running_service(settings) as url:
        assert post_file(url, seed_videos[0], endpoint="/jobs").status_code == 401
        job_id = post_file(url, seed_videos[0], endpoint="/jobs", headers=a).json()["id"]
        assert httpx.get(f"{url}/jobs/{job_id}", headers=a).json()["state"] == "queued"
        assert httpx.get(f"{url}/jobs/{job_id}", headers=b).status_code == 404
        assert httpx.get(f"{url}/jobs/{job_id}").status_code == 401
        assert httpx.delete(f"{url}/jobs/{job_id}", headers=b).status_code == 404
        assert httpx.get(f"{url}/jobs", headers=b).json()["total"] == 0
        assert httpx.get(f"{url}/jobs", headers=a).json()["total"] == 1
        secret_a = httpx.get(f"{url}/jobs/webhook-secret", headers=a).json()["secret"]
        secret_b = httpx.get(f"{url}/jobs/webhook-secret", headers=b).json()["secret"]
        assert secret_a != secret_b and len(secret_a) == 64
        cancelled = httpx.delete(f"{url}/jobs/{job_id}", headers=a).json()
        assert cancelled == {"id": job_id, "state": "cancelled", "erased": False}
        assert not (tmp_path / "jobs" / "videos" / job_id).exists()
        assert httpx.delete(f"{url}/jobs/{job_id}", headers=a).json()["erased"] is True
        assert httpx.get(f"{url}/jobs", headers=a).json()["total"] == 0


def test_a_file_no_worker_could_analyze_is_refused_at_submission(demo_repository, seed_videos, tmp_path):
    """Not a video, no video stream, one frame, longer than jobs take: /predict/'s 4xx (or the jobs'
    own) at once, and nothing recorded, queued or kept: not a 202 and a job that fails later."""
    one_frame = media.write_video(tmp_path / "one.mp4", [media.astronaut((128, 128))])
    cases = [
        (b"this is a text file named like a video\n" * 10, 415, "not_a_video"),
        (media.audio_only(tmp_path / "audio.mp4").read_bytes(), 422, "no_video_stream"),
        (one_frame.read_bytes(), 422, "too_few_frames"),
        (seed_videos[0].read_bytes(), 422, "video_too_long"),  # 5 s or more, and jobs take 3 s here
    ]
    settings = settings_for(demo_repository, tmp_path, jobs_worker="external", jobs_max_video_s=3)
    with running_service(settings) as url:
        for payload, status, code in cases:
            refused = post_file(url, payload, endpoint="/jobs", filename="clip.mp4")
            assert (refused.status_code, refused.json()["error"]["code"]) == (status, code), refused.text
        assert httpx.get(f"{url}/jobs").json()["total"] == 0
        assert not any((tmp_path / "jobs" / "videos").glob("*")), "no refused upload is kept"
        short = media.moving_face_video(tmp_path / "ok.mp4", count=20)
        assert post_file(url, short, endpoint="/jobs").status_code == 202


def test_a_webhook_to_a_private_address_is_refused_at_once(demo_repository, seed_videos, tmp_path):
    with running_service(settings_for(demo_repository, tmp_path, jobs_worker="external")) as url:
        for address in ("http://10.0.0.1/hook", "http://127.0.0.1:9/hook", "http://169.254.169.254/latest"):
            refused = post_file(url, seed_videos[0], endpoint="/jobs", data={"webhook_url": address})
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "webhook_address_forbidden"
        assert httpx.get(f"{url}/jobs").json()["total"] == 0


def test_the_outcome_is_posted_to_a_signed_webhook(demo_repository, seed_videos, tmp_path):
    """A real receiver on loopback (allowed by the setting, as on one machine): it gets the job's view
    once, signed with the owner's secret, which deepfake_client.webhooks.verify accepts."""
    from deepfake_client.webhooks import InvalidSignature, verify
    from tests.unit.test_webhooks import Receiver, _serve

    served = _serve(Receiver())
    receiver = next(served)
    try:
        settings = settings_for(demo_repository, tmp_path, webhook_allow_private=True)
        with running_service(settings) as url:
            secret = httpx.get(f"{url}/jobs/webhook-secret").json()["secret"]
            accepted = post_file(url, seed_videos[1], endpoint="/jobs", data={"webhook_url": receiver.url()})
            view, _ = wait_for(url, accepted.json()["id"])
            assert view["state"] == "done"
            deadline = time.monotonic() + 30
            while not receiver.received and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(receiver.received) == 1
            delivery = receiver.received[0]
            payload = verify(secret, delivery.headers["X-Deepfake-Signature"], delivery.body)
            assert payload["id"] == view["id"] and payload["state"] == "done"
            assert payload["result"]["receipt"] == view["result"]["receipt"]
            assert delivery.headers["X-Deepfake-Event"] == "job.done"
            with pytest.raises(InvalidSignature):
                verify(secret, delivery.headers["X-Deepfake-Signature"], delivery.body.replace(b"done", b"gone"))
            recorded = httpx.get(f"{url}/jobs/{view['id']}").json()["webhook"]
            assert recorded["delivered"] is True and recorded["attempts"] == 1
    finally:
        served.close()


def _worker(environment: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "preprocess_service.jobs.worker"],
        env={**os.environ, **environment},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def test_a_worker_killed_mid_job_leaves_it_to_another_that_finishes_it_once(demo_repository, redis_url, tmp_path):
    """Debian's Redis as the broker, deepfake-worker processes as in a cluster. The first worker is killed
    (SIGKILL: no goodbye) while the job runs; its lease lapses, the front's chore queues the job again,
    a second worker claims it as attempt 2 and finishes it; the first attempt can no longer write."""
    video = media.moving_face_video(tmp_path / "long.mp4", count=400, size=(192, 192), fps=10)  # 40 s: 80 samples
    shared = {
        "DEEPFAKE_MODEL_REPOSITORY": str(demo_repository),
        "DEEPFAKE_KEYS_DIR": str(tmp_path / "keys"),
        "DEEPFAKE_DATABASE_URL": f"sqlite:///{tmp_path}/history.sqlite3",
        "DEEPFAKE_JOBS_DIR": str(tmp_path / "jobs"),
        "DEEPFAKE_JOBS_BROKER_URL": redis_url,
        "DEEPFAKE_JOBS_LEASE_S": "4",
    }
    settings = Settings(
        model_repository=demo_repository,
        keys_dir=tmp_path / "keys",
        database_url=shared["DEEPFAKE_DATABASE_URL"],
        jobs_dir=tmp_path / "jobs",
        jobs_broker_url=redis_url,
        jobs_lease_s=4,
        jobs_worker="external",
        rate_limit="100000/minute",
    )
    with running_service(settings) as url:
        job_id = post_file(url, video, endpoint="/jobs").json()["id"]
        first = _worker({**shared, "DEEPFAKE_WORKER_PORT": str(free_port())}, tmp_path / "worker-1.log")
        try:
            view = wait_until_running(url, job_id)
            assert view["state"] == "running" and view["attempt"] == 1, view
            first.kill()
            first.wait(10)
            killed_at = view["progress"]
        finally:
            first.kill()
        second = _worker({**shared, "DEEPFAKE_WORKER_PORT": str(free_port())}, tmp_path / "worker-2.log")
        try:
            view, progress = wait_for(url, job_id, timeout_s=240)
        finally:
            second.terminate()
            second.wait(60)
        assert view["state"] == "done" and view["attempt"] == 2, view
        assert killed_at < 1 and progress[-1] == 1.0
        assert len(view["result"]["timeline"]["frames"]) == 80
        log = (tmp_path / "worker-2.log").read_text()
        assert log.count(f"job {job_id} done") == 1, log[-2000:]


def _sensitive_to_the_swap(clips: list[Path]):
    """The sensitive test model centred on the two faces' clips as sequences (what a window is), turned
    (if it must be) so the swapped face scores above the astronaut: the stretch is then the FAKE one."""
    import torch

    from export.architectures import normalise, pooled_features, trunk_of
    from export.calibration import face_crops
    from testing.sensitive_model import _last_linear, sensitive_model

    model = sensitive_model(clips, centre_on="sequences")
    detector = model.detector
    gaps = []
    with torch.no_grad():
        for crops in face_crops(clips, model.preprocessing):
            features = pooled_features(
                trunk_of(detector), normalise(torch.from_numpy(crops), model.preprocessing)[None]
            )
            logits = detector.temporal(features)
            gaps.append(float((logits[:, 0] - logits[:, 1]).mean()))
        if gaps[1] < gaps[0]:
            last = _last_linear(detector)
            last.weight[0].neg_()
            last.bias[0].neg_()
    return model


def test_a_ten_minute_video_locates_its_altered_stretch_in_flat_memory(redis_url, tmp_path):
    """10 minutes of a real face with 20 s swapped for another (300-320 s), as a job on a deepfake-worker:
    the timeline's flagged stretch is there and only there; progress never goes backwards; the
    worker's resident memory, read at 1, 5 and 10 minutes of video, stays flat."""
    from export.repository import export_repository

    clips = [
        media.altered_stretch_video(tmp_path / "astronaut.mp4", 8, (99, 99)),
        media.altered_stretch_video(tmp_path / "hopper.mp4", 8, (0, 99)),
    ]
    repository = tmp_path / "repository"
    export_repository(_sensitive_to_the_swap(clips), repository)
    video = media.altered_stretch_video(tmp_path / "interview.mp4", 600, (300, 320))
    shared = {
        "DEEPFAKE_MODEL_REPOSITORY": str(repository),
        "DEEPFAKE_KEYS_DIR": str(tmp_path / "keys"),
        "DEEPFAKE_DATABASE_URL": f"sqlite:///{tmp_path}/history.sqlite3",
        "DEEPFAKE_JOBS_DIR": str(tmp_path / "jobs"),
        "DEEPFAKE_JOBS_BROKER_URL": redis_url.replace("/0", "/2"),
    }
    settings = Settings(
        model_repository=repository,
        keys_dir=tmp_path / "keys",
        database_url=shared["DEEPFAKE_DATABASE_URL"],
        jobs_dir=tmp_path / "jobs",
        jobs_broker_url=shared["DEEPFAKE_JOBS_BROKER_URL"],
        jobs_worker="external",
        rate_limit="100000/minute",
    )
    with running_service(settings) as url:
        job_id = post_file(url, video, endpoint="/jobs").json()["id"]
        worker = _worker({**shared, "DEEPFAKE_WORKER_PORT": str(free_port())}, tmp_path / "worker.log")
        resident: dict[int, int] = {}  # minutes of video done → the worker's RSS (kB)
        progress: list[float] = []
        try:
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                view = httpx.get(f"{url}/jobs/{job_id}", timeout=30).json()
                progress.append(view["progress"])
                done_s = (view["timeline"] or {}).get("frames", [{}])[-1].get("t", 0) if view["timeline"] else 0
                for minute in (1, 5, 10):
                    if minute not in resident and done_s >= minute * 60 - 16:  # the last chunk of that minute
                        resident[minute] = _rss_kb(worker.pid)
                if view["state"] in ("done", "failed", "cancelled"):
                    break
                time.sleep(0.1)
        finally:
            worker.terminate()
            worker.wait(60)
    assert view["state"] == "done", view
    assert progress == sorted(progress)
    timeline = view["result"]["timeline"]
    assert len(timeline["frames"]) == 1200 and timeline["window"] == 20
    inside = [s for s in timeline["segments"] if 300 <= s["start_s"] and s["end_s"] <= 320]
    outside = [s for s in timeline["segments"] if s["end_s"] <= 300 or s["start_s"] >= 320]
    assert len(inside) == 3 and min(s["p_fake"] for s in inside) > max(s["p_fake"] for s in outside), (inside, outside)
    flagged = [(round(f["start_s"]), round(f["end_s"])) for f in timeline["flagged"]]
    assert len(flagged) == 1 and flagged[0][0] in (295, 300) and flagged[0][1] in (320, 325), (flagged, inside)
    assert sorted(resident) == [1, 5, 10], resident
    assert resident[10] - resident[1] < 64 * 1024, f"RSS grew with the video: {resident} kB"
    print(f"\nworker RSS at 1, 5, 10 minutes of video: {resident} kB")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_running_job_is_cancelled_and_stays_cancelled(demo_repository, tmp_path):
    video = media.altered_stretch_video(tmp_path / "long.mp4", 120, (0, 0))  # 240 samples: seconds of work
    with running_service(settings_for(demo_repository, tmp_path)) as url:
        job_id = post_file(url, video, endpoint="/jobs").json()["id"]
        view = wait_until_running(url, job_id)
        assert view["state"] == "running" and view["progress"] < 0.9, view
        assert httpx.delete(f"{url}/jobs/{job_id}").json() == {"id": job_id, "state": "cancelled", "erased": False}
        time.sleep(3)  # the worker notices at its next report and stops
        after = httpx.get(f"{url}/jobs/{job_id}").json()
        assert after["state"] == "cancelled" and after["result"] is None and after["progress"] < 1
        assert not (tmp_path / "jobs" / "videos" / job_id).exists()
        # the service goes on: the next job runs
        second = post_file(url, media.moving_face_video(tmp_path / "short.mp4", count=30), endpoint="/jobs")
        assert wait_for(url, second.json()["id"])[0]["state"] == "done"
