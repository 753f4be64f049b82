"""preprocess_service.history.store.HistoryStore on a real SQLite file, migrated by Alembic.

The store is where tenancy is enforced: every listing, cache lookup, erasure and statistic takes an
owner filter, and a query that forgot it would show or erase another owner's analyses. Time filters
are checked with offsets other than UTC, which SQLite alone would silently compare as clock digits.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from preprocess_service.history.models import AnalysisRecord
from preprocess_service.history.store import HEAD_REVISION, DatabaseFileGone, HistoryStore

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
PLUS_2 = timezone(timedelta(hours=2))
MINUS_5 = timezone(timedelta(hours=-5))
MODEL = "model-key-1"


def record(
    number: int,
    owner: str = "alice",
    created_at: datetime = T0,
    sha256: str = "a" * 64,
    result: str = "FAKE",
    model_key: str = MODEL,
    total_s: float = 1.0,
    demo: bool = False,
) -> AnalysisRecord:
    return AnalysisRecord(
        id=f"{number:032x}",
        owner=owner,
        created_at=created_at,
        filename=f"clip-{number}.mp4",
        size=1000 + number,
        sha256=sha256,
        model_key=model_key,
        checkpoint_sha256="c" * 64,
        precision="fp32",
        untrained_demo=demo,
        rule="sequence",
        result=result,
        p_fake=0.75 if result == "FAKE" else 0.25,
        total_s=total_s,
        answer={"result": result, "number": number},
    )


def rid(number: int) -> str:
    return f"{number:032x}"


@pytest.fixture(scope="module")
def migrated_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file migrated from nothing (the slow part, ~0.2 s), copied for each test."""
    path = tmp_path_factory.mktemp("history") / "template.sqlite3"
    template = HistoryStore(f"sqlite:///{path}")
    template.migrate()
    template.close()
    return path


@pytest.fixture
def store(tmp_path: Path, migrated_file: Path) -> Iterator[HistoryStore]:
    path = tmp_path / "history.sqlite3"
    shutil.copyfile(migrated_file, path)
    history = HistoryStore(f"sqlite:///{path}")
    history.migrate()  # at head already: only records the file's identity, as at start-up
    yield history
    history.close()


@pytest.fixture
def two_owners(store: HistoryStore) -> HistoryStore:
    """alice: 1 (10:00), 2 (11:00), 3 (12:00); bob: 11 (10:30), 12 (11:30). Times UTC."""
    for number, hour in ((1, 0), (2, 1), (3, 2)):
        store.save(record(number, "alice", T0 + timedelta(hours=hour), result="FAKE" if number != 2 else "REAL"))
    for number, minutes in ((11, 30), (12, 90)):
        store.save(record(number, "bob", T0 + timedelta(minutes=minutes), sha256="b" * 64, result="REAL"))
    return store


def ids(page) -> list[str]:
    return [item.id for item in page.items]


def test_migrate_reaches_the_head_revision(tmp_path: Path) -> None:
    history = HistoryStore(f"sqlite:///{tmp_path / 'fresh' / 'history.sqlite3'}")  # the folder is made too
    history.migrate()
    assert history.revision() == HEAD_REVISION
    assert history.page(None).total == 0
    history.close()


def test_a_saved_record_reads_back_whole_with_its_time_in_utc(store: HistoryStore) -> None:
    store.save(record(1, created_at=datetime(2026, 5, 1, 12, 0, tzinfo=PLUS_2)))
    read = store.get(rid(1), "alice")
    assert read is not None
    assert read.created_at == T0 and read.created_at.utcoffset() == timedelta(0)
    assert read.answer == {"result": "FAKE", "number": 1}
    assert (read.filename, read.size, read.sha256) == ("clip-1.mp4", 1001, "a" * 64)


def test_get_is_scoped_by_owner(two_owners: HistoryStore) -> None:
    assert two_owners.get(rid(11), "alice") is None
    assert two_owners.get(rid(11), "bob") is not None
    assert two_owners.get(rid(11), None) is not None


def test_page_lists_only_the_owners_analyses_newest_first(two_owners: HistoryStore) -> None:
    page = two_owners.page("alice")
    assert ids(page) == [rid(3), rid(2), rid(1)]
    assert page.total == 3
    assert {item.owner for item in page.items} == {"alice"}
    assert ids(two_owners.page("bob")) == [rid(12), rid(11)]
    assert two_owners.page("carol").items == [] and two_owners.page("carol").total == 0


def test_page_with_owner_none_lists_every_owner(two_owners: HistoryStore) -> None:
    page = two_owners.page(None)
    assert ids(page) == [rid(3), rid(12), rid(2), rid(11), rid(1)]
    assert page.total == 5


def test_page_paginates_with_the_total_of_every_page(two_owners: HistoryStore) -> None:
    first, second = two_owners.page(None, page=1, per_page=2), two_owners.page(None, page=3, per_page=2)
    assert ids(first) == [rid(3), rid(12)] and first.total == 5
    assert ids(second) == [rid(1)] and second.total == 5


def test_page_filters_by_result_and_file_within_the_owner(two_owners: HistoryStore) -> None:
    assert ids(two_owners.page("alice", result="REAL")) == [rid(2)]
    assert ids(two_owners.page("alice", sha256="b" * 64)) == []
    assert ids(two_owners.page(None, sha256="b" * 64)) == [rid(12), rid(11)]


def test_since_with_a_positive_offset_is_compared_in_utc(two_owners: HistoryStore) -> None:
    since = datetime(2026, 5, 1, 12, 30, tzinfo=PLUS_2)  # 10:30 UTC
    assert ids(two_owners.page("alice", since=since)) == [rid(3), rid(2)]
    assert ids(two_owners.page(None, since=since)) == [rid(3), rid(12), rid(2), rid(11)]  # at 10:30: included


def test_until_with_a_negative_offset_is_compared_in_utc_and_is_exclusive(two_owners: HistoryStore) -> None:
    until = datetime(2026, 5, 1, 6, 0, tzinfo=MINUS_5)  # 11:00 UTC, alice's second analysis: excluded
    assert ids(two_owners.page("alice", until=until)) == [rid(1)]
    assert ids(two_owners.page("alice", until=until + timedelta(seconds=1))) == [rid(2), rid(1)]


def test_since_and_until_together(two_owners: HistoryStore) -> None:
    since = datetime(2026, 5, 1, 5, 15, tzinfo=MINUS_5)  # 10:15 UTC
    until = datetime(2026, 5, 1, 13, 45, tzinfo=PLUS_2)  # 11:45 UTC
    assert ids(two_owners.page(None, since=since, until=until)) == [rid(12), rid(2), rid(11)]


def test_cached_returns_the_owners_newest_analysis_of_the_file_by_the_model(store: HistoryStore) -> None:
    store.save(record(1, "alice", T0))
    store.save(record(2, "alice", T0 + timedelta(hours=1)))
    store.save(record(3, "alice", T0 + timedelta(hours=2), model_key="another-model"))
    hit = store.cached("alice", "a" * 64, MODEL)
    assert hit is not None and hit.id == rid(2)


def test_cached_never_returns_another_owners_row(store: HistoryStore) -> None:
    store.save(record(1, "alice", T0 + timedelta(hours=5)))
    assert store.cached("bob", "a" * 64, MODEL) is None
    store.save(record(2, "bob", T0))
    hit = store.cached("bob", "a" * 64, MODEL)
    assert hit is not None and hit.id == rid(2) and hit.owner == "bob"  # bob's own, though alice's is newer


def test_cached_misses_another_file_or_model(store: HistoryStore) -> None:
    store.save(record(1))
    assert store.cached("alice", "b" * 64, MODEL) is None
    assert store.cached("alice", "a" * 64, "another-model") is None


def test_delete_by_id_within_the_owner(two_owners: HistoryStore) -> None:
    assert two_owners.delete("alice", analysis_id=rid(11)) == []  # bob's: not alice's to erase
    assert two_owners.get(rid(11), None) is not None
    assert two_owners.delete("alice", analysis_id=rid(2)) == [rid(2)]
    assert two_owners.get(rid(2), None) is None
    assert two_owners.page(None).total == 4


def test_delete_by_file_erases_only_the_owners_analyses_of_it(store: HistoryStore) -> None:
    store.save(record(1, "alice"))
    store.save(record(2, "alice", T0 + timedelta(hours=1)))
    store.save(record(3, "alice", sha256="c" * 64))
    store.save(record(4, "bob"))
    assert sorted(store.delete("alice", sha256="a" * 64)) == [rid(1), rid(2)]
    assert ids(store.page(None)) == [rid(3), rid(4)]  # same time: by id
    assert store.get(rid(4), "bob") is not None


def test_delete_as_the_operator_erases_every_owners(two_owners: HistoryStore) -> None:
    assert two_owners.delete(None, analysis_id=rid(11)) == [rid(11)]
    assert two_owners.get(rid(11), None) is None


def test_delete_naming_neither_an_analysis_nor_a_file_is_refused(two_owners: HistoryStore) -> None:
    for owner in ("alice", None):
        with pytest.raises(ValueError):
            two_owners.delete(owner)
    assert two_owners.page(None).total == 5


def test_purge_by_age(two_owners: HistoryStore) -> None:
    now = T0 + timedelta(hours=3)  # 13:00; older than 2 h: before 11:00
    erased = two_owners.purge(now, max_age=timedelta(hours=2), max_per_owner=None)
    assert sorted(erased) == [rid(1), rid(11)]
    assert ids(two_owners.page(None)) == [rid(3), rid(12), rid(2)]


def test_purge_by_rows_per_owner_keeps_each_owners_newest(two_owners: HistoryStore) -> None:
    erased = two_owners.purge(T0, max_age=None, max_per_owner=1)
    assert sorted(erased) == [rid(1), rid(2), rid(11)]
    assert ids(two_owners.page(None)) == [rid(3), rid(12)]


def test_purge_by_both_lists_each_id_once(two_owners: HistoryStore) -> None:
    erased = two_owners.purge(T0 + timedelta(hours=3), max_age=timedelta(hours=2), max_per_owner=2)
    assert sorted(erased) == [rid(1), rid(11)]  # both old and beyond alice's two newest: once
    assert len(erased) == len(set(erased))


def test_purge_with_no_rule_erases_nothing(two_owners: HistoryStore) -> None:
    assert two_owners.purge(T0 + timedelta(days=365), max_age=None, max_per_owner=None) == []
    assert two_owners.page(None).total == 5


def test_stats_are_per_owner(store: HistoryStore) -> None:
    for number, seconds in enumerate([1.0, 2.0, 3.0, 4.0, 5.0], start=1):
        result = "FAKE" if number % 2 else "REAL"
        store.save(
            record(number, "alice", T0 + timedelta(minutes=number), result=result, total_s=seconds, demo=number == 1)
        )
    store.save(record(9, "bob", total_s=100.0, result="REAL"))
    alice = store.stats("alice")
    assert alice["analyses"] == 5
    assert alice["by_result"] == {"FAKE": 3, "REAL": 2}
    assert alice["untrained_demo"] == 1
    assert alice["latency_s"] == {"p50": 3.0, "p90": 5.0, "p99": 5.0, "mean": 3.0}
    everyone = store.stats(None)
    assert everyone["analyses"] == 6
    assert everyone["by_result"] == {"FAKE": 3, "REAL": 3}
    assert everyone["latency_s"]["p99"] == 100.0


def test_stats_of_an_owner_with_nothing(store: HistoryStore) -> None:
    store.save(record(1, "alice"))
    assert store.stats("carol") == {"analyses": 0, "by_result": {}, "untrained_demo": 0, "latency_s": {}}


def test_a_database_file_removed_under_the_service_refuses_writes(store: HistoryStore, tmp_path: Path) -> None:
    (tmp_path / "history.sqlite3").unlink()
    with pytest.raises(DatabaseFileGone, match="removed"):
        store.save(record(1))


def test_a_database_file_replaced_under_the_service_refuses_writes(
    store: HistoryStore, tmp_path: Path, migrated_file: Path
) -> None:
    replacement = tmp_path / "replacement.sqlite3"
    shutil.copyfile(migrated_file, replacement)  # made while the original exists: another inode
    replacement.replace(tmp_path / "history.sqlite3")
    with pytest.raises(DatabaseFileGone, match="replaced"):
        store.save(record(1))


def test_listings_filter_by_the_model_that_answered(store: HistoryStore) -> None:
    """Verdicts of different checkpoints or precisions for one file do not compare: a listing can keep one."""

    first, second, third = record(1), record(2), record(3)
    second.checkpoint_sha256 = "d" * 64
    third.precision = "int8"
    for item in (first, second, third):
        store.save(item)
    assert [s.id for s in store.page("alice", checkpoint_sha256="c" * 64).items] == [rid(1), rid(3)]
    assert [s.id for s in store.page("alice", precision="int8").items] == [rid(3)]
    assert store.page("alice", checkpoint_sha256="c" * 64, precision="fp32").total == 1
    assert store.page("alice", checkpoint_sha256="dddddddddddd").total == 1  # the prefix a table shows
    assert store.page("alice", checkpoint_sha256="%").total == 0  # a LIKE wildcard is a character here
    assert {(s.checkpoint_sha256[:1], s.precision) for s in store.page("alice").items} == {
        ("c", "fp32"),
        ("d", "fp32"),
        ("c", "int8"),
    }


def test_a_service_not_migrating_waits_for_its_revision_and_accepts_a_newer_one(tmp_path: Path) -> None:
    """DEEPFAKE_MIGRATE_ON_START=false (the cluster): never migrated or behind is refused with the
    command to run; a revision this release does not know (a newer release's, whose migrations only
    add) is accepted, so an old pod during a rollout or after a rollback keeps its history."""
    from sqlalchemy import text

    from preprocess_service.history.store import SchemaBehind

    store = HistoryStore(f"sqlite:///{tmp_path}/history.sqlite3")
    with pytest.raises(SchemaBehind, match="revision none.*deepfake-serve --migrate"):
        store.require_head()
    store.migrate()
    store.require_head()
    for revision, accepted in (("0002", False), ("9001_a_newer_release", True), (HEAD_REVISION, True)):
        with store.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
        if accepted:
            store.require_head()
        else:
            with pytest.raises(SchemaBehind, match=f"revision {revision}"):
                store.require_head()
    store.close()


def test_two_processes_migrating_one_sqlite_file_at_once_both_succeed(tmp_path: Path) -> None:
    """`deepfake-serve --workers N` on a new file: every process ends at the head revision. Alembic
    runs SQLite's DDL without a transaction, so store.migrate holds a file lock beside the database;
    with the lock taken out this still passed 4 of 4 times here (the window is narrow), so this test
    shows the outcome, not that the lock is what gives it."""
    import os
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path}/history.sqlite3"
    environment = {**os.environ, "DEEPFAKE_DATABASE_URL": url}
    command = [sys.executable, "-m", "preprocess_service", "--migrate"]
    processes = [
        subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    store = HistoryStore(url)
    assert store.revision() == HEAD_REVISION
    store.close()
