"""Load and upload limits over real HTTP: admission control, streamed size cap, display artifacts."""

from __future__ import annotations

import asyncio
import time

import httpx

from preprocess_service.artifacts import sweep
from preprocess_service.settings import Settings
from testing.server import post_file, running_service
from tests import media

BOUNDARY = "testboundary"


def _multipart_head(filename: str = "clip.mp4") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()


def _in_flight(url: str) -> float:
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("deepfake_analyses_in_flight "):
            return float(line.split()[1])
    raise AssertionError("no in-flight gauge")


def test_full_queue_answers_503_with_retry_after(demo_repository, tmp_path):
    settings = Settings(
        model_repository=demo_repository, max_in_flight=1, keys_dir=tmp_path, upload_dir=tmp_path / "up"
    )

    async def scenario(url: str) -> tuple[httpx.Response, httpx.Response]:
        release = asyncio.Event()

        async def slow_body():
            yield _multipart_head()
            await release.wait()  # the first analysis stays admitted while this waits
            yield b"not really a video" + f"\r\n--{BOUNDARY}--\r\n".encode()

        headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
        async with httpx.AsyncClient(timeout=60) as client:
            first = asyncio.create_task(client.post(url + "/predict/", content=slow_body(), headers=headers))
            deadline = time.monotonic() + 20
            while await asyncio.to_thread(_in_flight, url) < 1:
                assert time.monotonic() < deadline, "the first request was never admitted"
                await asyncio.sleep(0.05)
            second = await client.post(url + "/predict/", files={"file": ("b.mp4", b"x" * 100)})
            release.set()
            return await first, second

    with running_service(settings) as url:
        first, second = asyncio.run(scenario(url))
        assert second.status_code == 503 and second.headers["Retry-After"] == "2"
        assert second.json()["error"]["code"] == "overloaded"
        assert first.status_code == 415  # it was admitted and analyzed (and was not a video)
        assert _in_flight(url) == 0
    assert list((tmp_path / "up").iterdir()) == []


def test_streamed_upload_without_length_stops_at_the_cap(demo_repository, tmp_path):
    settings = Settings(
        model_repository=demo_repository, max_upload_mb=1, keys_dir=tmp_path, upload_dir=tmp_path / "up"
    )
    sent = {"bytes": 0}

    def endless():  # chunked transfer: no Content-Length for an early refusal, so the stream is cut
        yield _multipart_head()
        for _ in range(64):
            sent["bytes"] += 64 * 1024
            yield b"\0" * (64 * 1024)
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    with running_service(settings) as url:
        response = httpx.post(
            url + "/predict/",
            content=endless(),
            timeout=60,
            headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        )
    assert response.status_code == 413 and response.json()["error"]["code"] == "file_too_large"
    assert list((tmp_path / "up").iterdir()) == []


def test_artifacts_are_served_when_enabled_and_swept_after_their_ttl(demo_repository, tmp_path):
    artifacts_dir = tmp_path / "artifacts"
    settings = Settings(
        model_repository=demo_repository, artifacts=True, artifacts_dir=artifacts_dir, keys_dir=tmp_path
    )
    video = media.moving_face_video(tmp_path / "face.mp4", count=20)
    with running_service(settings) as url:
        body = post_file(url, video).json()
        urls = [f["url"] for f in body["frames_for_display"]] + [f["url"] for f in body["cropped_faces"]]
        assert len(urls) == 8 and all(u and u.startswith("/artifacts/") for u in urls)
        deadline = time.monotonic() + 20
        while not all(httpx.get(url + u).status_code == 200 for u in urls):
            assert time.monotonic() < deadline, "artifacts were never written"
            time.sleep(0.1)
        image = httpx.get(url + urls[-1])
        assert image.headers["content-type"] == "image/jpeg" and image.content[:2] == b"\xff\xd8"
    assert sweep(artifacts_dir, ttl_s=3600) == 0
    assert sweep(artifacts_dir, ttl_s=-1) == 1 and list(artifacts_dir.iterdir()) == []


def test_old_setting_names_still_work_with_a_warning(monkeypatch):
    from preprocess_service.settings import deprecated_names_in

    monkeypatch.setenv("DEEPFAKE_MAX_PENDING", "3")
    monkeypatch.setenv("DEEPFAKE_WORKERS", "5")
    settings = Settings()
    assert (settings.max_in_flight, settings.cpu_threads) == (3, 5)
    warnings = deprecated_names_in({"DEEPFAKE_MAX_PENDING": "3", "DEEPFAKE_WORKERS": "5"})
    assert warnings == [
        "DEEPFAKE_WORKERS is deprecated; use DEEPFAKE_CPU_THREADS",
        "DEEPFAKE_MAX_PENDING is deprecated; use DEEPFAKE_MAX_IN_FLIGHT",
    ]
