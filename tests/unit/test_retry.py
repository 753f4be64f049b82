"""The one retry policy (deepfake_client.retry) over real HTTP: a local ``http.server`` on loopback
answers each request from a script, so the client's and the evaluation's calls go through httpx,
a socket and a server exactly as they would to the service. Waits the policy computes are recorded
through its ``sleep`` hook where a test would otherwise sleep for seconds."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from deepfake_client.api import DeepfakeClient, ServiceError
from deepfake_client.retry import RetryPolicy, retry_after_s, send_with_retry, send_with_retry_async
from evaluation.dataset import LabelledVideo
from evaluation.runner import analyze_all

ANSWER = {
    "verdicts": {"sequence": {"result": "FAKE", "p_fake": 0.9}, "original": {"result": "REAL", "p_fake": 0.2}},
    "frames_with_face": 30,
    "frames_analyzed": 30,
    "metadata": {"duration": 2.0},
    "stage_times_sec": {"decode": 0.1, "faces": 0.2, "inference": 0.3, "total": 0.7},
    "cached": False,
}


@dataclass
class Scripted:
    """Answers (status, headers, body) in order; the last one is repeated."""

    url: str = ""
    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    requests: list[dict] = field(default_factory=list)

    def script(self, *answers: tuple[int, dict[str, str], object]) -> None:
        self.answers = [(s, h, b if isinstance(b, bytes) else json.dumps(b).encode()) for s, h, b in answers]


def error(code: str) -> dict:
    return {"error": {"code": code, "message": code.replace("_", " ")}}


@pytest.fixture
def server() -> Iterator[Scripted]:
    scripted = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            url = urlsplit(self.path)
            scripted.requests.append({"path": url.path, "query": parse_qs(url.query), "size": len(body)})
            status, headers, payload = scripted.answers[min(len(scripted.requests), len(scripted.answers)) - 1]
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Handler) as http:
        thread = threading.Thread(target=http.serve_forever, daemon=True)
        thread.start()
        scripted.url = f"http://127.0.0.1:{http.server_address[1]}"
        try:
            yield scripted
        finally:
            http.shutdown()


@pytest.fixture
def video(tmp_path) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\0" * 1000)
    return path


def test_retry_after_reads_seconds_and_http_dates_and_is_bounded():
    policy = RetryPolicy(default_wait_s=2, max_wait_s=60)
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)

    def wait(value: str | None) -> float:
        headers = {"Retry-After": value} if value is not None else {}
        return retry_after_s(httpx.Response(503, headers=headers), policy, now)

    assert wait("7") == 7 and wait("0") == 0 and wait(" 1.5 ") == 1.5
    assert wait(format_datetime(now + timedelta(seconds=30), usegmt=True)) == 30
    assert wait("Thu, 01 Jan 2026 12:00:45 GMT") == 45
    assert wait(format_datetime(now - timedelta(hours=1), usegmt=True)) == 0  # already past
    assert wait("3600") == 60 and wait(format_datetime(now + timedelta(days=1), usegmt=True)) == 60  # bounded
    assert wait(None) == 2 and wait("soon") == 2 and wait("-5") == 2 and wait("nan") == 2  # unreadable: default


def test_a_429_is_asked_again_after_its_retry_after_by_the_client(server, video):
    """Real waiting here (1 s), the rest of the tests record the waits instead."""
    server.script((429, {"Retry-After": "1"}, error("rate_limited")), (200, {}, ANSWER))
    started = time.monotonic()
    with DeepfakeClient(server.url) as client:
        assert client.predict(video, refresh=True) == ANSWER
    assert time.monotonic() - started >= 0.95
    assert len(server.requests) == 2
    assert all(r["size"] > 1000 and r["query"] == {"refresh": ["1"]} for r in server.requests)  # the whole file again


async def _post(server: Scripted, policy: RetryPolicy, waits: list[float]) -> httpx.Response:
    async def record(seconds: float) -> None:
        waits.append(seconds)

    async with httpx.AsyncClient() as session:
        return await send_with_retry_async(lambda: session.post(server.url + "/predict/"), policy, sleep=record)


def test_a_503_is_asked_again_after_its_retry_after(server):
    server.script((503, {"Retry-After": "3"}, error("busy")), (503, {}, error("busy")), (200, {}, ANSWER))
    waits: list[float] = []
    response = asyncio.run(_post(server, RetryPolicy(default_wait_s=2), waits))
    assert response.status_code == 200 and waits == [3.0, 2.0]  # the second said nothing: the default
    assert len(server.requests) == 3


def test_an_http_date_is_honoured_and_every_wait_bounded(server):
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    server.script((503, {"Retry-After": soon}, error("busy")), (429, {"Retry-After": "86400"}, b""), (200, {}, ANSWER))
    waits: list[float] = []
    response = asyncio.run(_post(server, RetryPolicy(max_wait_s=30), waits))
    assert response.status_code == 200
    assert 17 <= waits[0] <= 20 and waits[1] == 30


def test_attempts_are_bounded_and_the_last_answer_is_returned(server, video):
    server.script((503, {"Retry-After": "0"}, error("backend_unavailable")))
    waits: list[float] = []
    assert asyncio.run(_post(server, RetryPolicy(attempts=4), waits)).status_code == 503
    assert len(server.requests) == 4 and waits == [0.0] * 3
    server.requests.clear()
    with DeepfakeClient(server.url, retry=RetryPolicy(attempts=3)) as client, pytest.raises(ServiceError) as raised:
        client.predict(video)
    assert raised.value.status == 503 and raised.value.code == "backend_unavailable"
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [400, 404, 413, 500])
def test_any_other_answer_is_not_asked_again(server, video, status):
    server.script((status, {"Retry-After": "0"}, error("refused")), (200, {}, ANSWER))
    slept: list[float] = []
    with httpx.Client() as http:
        response = send_with_retry(lambda: http.post(server.url + "/predict/"), RetryPolicy(), sleep=slept.append)
    assert response.status_code == status and len(server.requests) == 1 and slept == []
    server.requests.clear()  # the script starts again: the refusal, then (were it asked again) the answer
    with DeepfakeClient(server.url) as client, pytest.raises(ServiceError) as raised:
        client.predict(video)
    assert raised.value.code == "refused" and len(server.requests) == 1


def test_a_connection_that_fails_is_not_retried_but_raised():
    calls = []

    def send() -> httpx.Response:
        calls.append(1)
        raise httpx.ConnectError("refused")

    with pytest.raises(httpx.ConnectError):
        send_with_retry(send, RetryPolicy(), sleep=lambda seconds: None)
    assert calls == [1]


def test_predict_many_shares_the_policy(server, video):
    server.script((429, {"Retry-After": "0"}, error("rate_limited")), (200, {}, ANSWER))
    with DeepfakeClient(server.url) as client:
        assert client.predict_many([video]) == {video: ANSWER}
    assert len(server.requests) == 2


def test_the_evaluation_goes_through_the_client_and_keeps_its_rows(server, tmp_path):
    """503 then 429 then the answer: one row analyzed; a refusal is a row with the service's code,
    an answer without one ``http_NNN``, a service that cannot be reached ``unreachable: ...``."""
    videos = []
    for key in ("FAKE/a.mp4", "REAL/b.mp4"):
        (tmp_path / key).parent.mkdir(exist_ok=True)
        (tmp_path / key).write_bytes(b"\0" * 100)
        videos.append(LabelledVideo(key, tmp_path / key, key[:4]))
    server.script(
        (503, {"Retry-After": "0"}, error("busy")),
        (429, {"Retry-After": "0"}, error("rate_limited")),
        (200, {}, ANSWER),
        (422, {}, error("no_face_detected")),
    )
    rows = asyncio.run(analyze_all(server.url, videos, tmp_path / "one.csv", concurrency=1))
    assert rows[0].ok and rows[0].p_fake_sequence == 0.9 and rows[0].cached is False
    assert rows[1].error == "no_face_detected"
    assert [r["query"] for r in server.requests] == [{"refresh": ["1"]}] * 4

    server.requests.clear()
    server.script((500, {"Content-Type": "text/plain"}, b"oops"))
    rows = asyncio.run(analyze_all(server.url, videos[:1], tmp_path / "two.csv", refresh=False))
    assert rows[0].error == "http_500" and server.requests[0]["query"] == {"refresh": ["0"]}

    rows = asyncio.run(analyze_all("http://127.0.0.1:9", videos[:1], tmp_path / "three.csv"))
    assert rows[0].error == "unreachable: ConnectError"
