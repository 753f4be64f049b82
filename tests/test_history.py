"""The history of analyses over real HTTP: stored answers, paging and filters, CSV, statistics, the
cache by SHA-256 and model, and database failures that never cost the caller the answer.

Each test that takes ``database_url`` runs on SQLite (the default) and on PostgreSQL (a cluster's
history): a private server the session starts (conftest's ``postgres_url``), a fresh schema per test.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from preprocess_service.settings import Settings
from testing.server import post_file, running_service


def settings_for(repository, database_url: str, tmp_path, cache: bool = True) -> Settings:
    return Settings(
        model_repository=repository, database_url=database_url, history_cache=cache, keys_dir=tmp_path / "keys"
    )


def test_answers_are_stored_listed_filtered_and_paged(demo_repository, seed_videos, database_url, tmp_path):
    started = datetime.now(UTC) - timedelta(seconds=1)
    with running_service(settings_for(demo_repository, database_url, tmp_path)) as url:
        answers = [post_file(url, video).json() for video in seed_videos[:3]]
        assert all(answer["history_id"] and not answer["cached"] for answer in answers)
        listing = httpx.get(url + "/analyses").json()
        assert listing["total"] == 3
        assert [item["id"] for item in listing["items"]] == [a["history_id"] for a in reversed(answers)]  # newest first
        first = listing["items"][-1]
        assert first["sha256_hex"] == answers[0]["sha256_hex"] and first["result"] == answers[0]["result"]
        assert first["untrained_demo"] is True and first["precision"] == "fp32"

        page_one = httpx.get(url + "/analyses", params={"per_page": 2}).json()
        page_two = httpx.get(url + "/analyses", params={"per_page": 2, "page": 2}).json()
        assert len(page_one["items"]) == 2 and len(page_two["items"]) == 1 and page_two["total"] == 3
        by_hash = httpx.get(url + "/analyses", params={"sha256": answers[1]["sha256_hex"]}).json()
        assert [item["id"] for item in by_hash["items"]] == [answers[1]["history_id"]]
        for verdict in ("FAKE", "REAL"):
            found = httpx.get(url + "/analyses", params={"verdict": verdict}).json()
            assert found["total"] == sum(answer["result"] == verdict for answer in answers)
        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert httpx.get(url + "/analyses", params={"since": future}).json()["total"] == 0
        window = {"since": started.isoformat(), "until": future}
        assert httpx.get(url + "/analyses", params=window).json()["total"] == 3
        assert httpx.get(url + "/analyses", params={"sha256": "not-a-hash"}).status_code == 422

        stored = httpx.get(url + f"/analyses/{answers[0]['history_id']}").json()
        assert stored["answer"]["verdicts"] == answers[0]["verdicts"]
        assert stored["answer"]["frames"] == answers[0]["frames"]  # scores and boxes
        assert stored["answer"]["stage_times_sec"] == answers[0]["stage_times_sec"]
        assert stored["answer"]["model"] == answers[0]["model"]
        assert httpx.get(url + "/analyses/" + "0" * 32).json()["error"]["code"] == "not_found"

        stored_csv = httpx.get(url + f"/analyses/{answers[0]['history_id']}.csv")
        fresh_csv = post_file(url, seed_videos[0], "/predict_csv/?format=csv")
        assert stored_csv.headers["content-type"].startswith("text/csv")
        assert list(csv.reader(io.StringIO(stored_csv.text))) == list(csv.reader(io.StringIO(fresh_csv.text)))

        stats = httpx.get(url + "/stats").json()
        assert stats["analyses"] == 3 and sum(stats["by_result"].values()) == 3 and stats["untrained_demo"] == 3
        times = sorted(answer["processing_time_sec"] for answer in answers)
        assert stats["latency_s"]["p50"] == pytest.approx(times[1]) and stats["latency_s"]["p99"] == times[-1]


def _metric(url: str, name: str) -> float:
    lines = httpx.get(url + "/metrics").text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name) and not line.startswith("#"))


def test_the_same_file_and_model_is_answered_from_the_history(demo_repository, seed_videos, database_url, tmp_path):
    with running_service(settings_for(demo_repository, database_url, tmp_path)) as url:
        first = post_file(url, seed_videos[2]).json()
        again = post_file(url, seed_videos[2], filename="renamed.mp4").json()
        assert again["cached"] is True and again["history_id"] == first["history_id"]
        assert again["verdicts"] == first["verdicts"] and again["analyzed_at"] == first["analyzed_at"]
        assert _metric(url, "deepfake_cache_hits_total") == 1
        forced = post_file(url, seed_videos[2], "/predict/?refresh=1").json()
        assert forced["cached"] is False and forced["history_id"] != first["history_id"]
        assert forced["verdicts"]["sequence"]["p_fake"] == pytest.approx(first["verdicts"]["sequence"]["p_fake"])
        assert httpx.get(url + "/analyses").json()["total"] == 2  # a cache hit is not a new analysis
    with running_service(settings_for(demo_repository, database_url, tmp_path, cache=False)) as url:
        assert post_file(url, seed_videos[2]).json()["cached"] is False


def test_another_model_is_not_answered_from_the_first_ones_history(
    demo_repository, seed_videos, database_url, tmp_path
):
    from export.checkpoint import demo_model
    from export.repository import export_repository

    other = tmp_path / "legacy"
    export_repository(demo_model("legacy"), other)
    with running_service(settings_for(demo_repository, database_url, tmp_path)) as url:
        post_file(url, seed_videos[3])
    with running_service(settings_for(other, database_url, tmp_path)) as url:
        answer = post_file(url, seed_videos[3]).json()
        assert answer["cached"] is False and answer["model"]["family"] == "legacy"


def test_a_failing_database_never_costs_the_answer(demo_repository, seed_videos, tmp_path):
    path = tmp_path / "history.sqlite3"
    with running_service(settings_for(demo_repository, f"sqlite:///{path}", tmp_path)) as url:
        assert post_file(url, seed_videos[0]).json()["history_id"]
        with sqlite3.connect(path) as connection:  # the database breaks under the running service
            connection.execute("DROP TABLE analyses")
        answer = post_file(url, seed_videos[1])
        assert answer.status_code == 200 and answer.json()["history_id"] is None
        assert answer.json()["verdicts"]["sequence"]["result"] in {"FAKE", "REAL"}
        assert _metric(url, 'deepfake_history_errors_total{operation="save"}') == 1
        assert _metric(url, 'deepfake_history_errors_total{operation="lookup"}') == 1
    unreachable = "sqlite:////proc/no-such-place/history.sqlite3"
    with running_service(settings_for(demo_repository, unreachable, tmp_path)) as url:
        assert post_file(url, seed_videos[0]).status_code == 200
        assert httpx.get(url + "/analyses").json()["error"]["code"] == "history_unavailable"
        assert httpx.get(url + "/analyses").status_code == 503
        assert _metric(url, 'deepfake_history_errors_total{operation="open"}') == 1


def test_migrations_bring_an_empty_database_to_head(database_url):
    from alembic.migration import MigrationContext

    from preprocess_service.history.store import HEAD_REVISION, HistoryStore

    store = HistoryStore(database_url)
    store.migrate()
    store.migrate()  # idempotent: a restarted service migrates again
    with store.engine.connect() as connection:
        assert MigrationContext.configure(connection).get_current_revision() == HEAD_REVISION
    store.close()
