"""Shared fixtures: one demo export per test session, real seed videos, real faces."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
SEED_VIDEOS = ROOT.parent / "shared" / "testdata" / "seed_videos"


@pytest.fixture(scope="session", autouse=True)
def history_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Every service the tests start keeps its history in this session's own SQLite file (never the
    checkout's var/), and answers from it only where a test turns the cache on (tests/test_history.py):
    elsewhere a cached answer would hide what those tests exercise (a dead Triton, a fresh analysis)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('history')}/history.sqlite3"
    patch = pytest.MonkeyPatch()
    patch.setenv("DEEPFAKE_DATABASE_URL", url)
    patch.setenv("DEEPFAKE_HISTORY_CACHE", "false")
    # the client's pinned public keys: this session's own store, never the user's ~/.config
    patch.setenv("DEEPFAKE_CLIENT_KEYS", str(tmp_path_factory.mktemp("client") / "keys.json"))
    yield url
    patch.undo()


@pytest.fixture(scope="session")
def demo_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Triton model repository exported from the untrained demo model, as `make serve` makes it."""
    from export.checkpoint import demo_model
    from export.repository import export_repository

    repository = tmp_path_factory.mktemp("model_repository")
    export_repository(demo_model(), repository)
    return repository


@pytest.fixture(scope="module")
def module_folder(tmp_path_factory: pytest.TempPathFactory, request) -> Iterator[Callable[[str], Path]]:
    """New folders for one test module's shared files (exports, datasets), deleted when the module ends.

    An export is 170-700 MB; kept to the session's end, as tmp_path_factory keeps them, they came to 13 GB a
    run and CI's disk ran out part-way. Function-level files use tmp_path, which pytest deletes after each
    passing test (tmp_path_retention_policy = "failed" in pyproject.toml)."""
    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])

    def make(name: str) -> Path:
        folder = root / name
        folder.mkdir()
        return folder

    yield make
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def seed_videos() -> list[Path]:
    videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
    assert len(videos) == 5, f"expected the 5 seed videos in {SEED_VIDEOS}"
    return videos


@pytest.fixture(scope="session")
def sensitive(seed_videos, tmp_path_factory: pytest.TempPathFactory):
    """The sensitive test model (testing/sensitive_model.py, residual branches at 0.2, centred on frames),
    its checkpoint and its calibration split: made once for the precision tests (tests/test_precision.py,
    tests/test_precision_plans.py), which only read them."""
    from export.calibration import calibration_set
    from testing.sensitive_model import save_checkpoint, sensitive_model

    model = sensitive_model(seed_videos, residual_scale=0.2)
    checkpoint = save_checkpoint(model, tmp_path_factory.mktemp("sensitive") / "checkpoint.pth")
    return model, checkpoint, calibration_set(SEED_VIDEOS, model.preprocessing)


@pytest.fixture(scope="session")
def triton(demo_repository):
    """A real tritonserver 2.51 (CPU config) serving the demo export unchanged.

    Prepared from PyPI wheels by deploy/triton_local; if that fails the tests fail, loudly: they
    are never skipped. The onnxruntime backend is a Python stand-in there (see its docstring).
    """
    from deploy.triton_local.server import start_triton

    server = start_triton(demo_repository)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private PostgreSQL (deploy/local_servers.py), started once per session on a free loopback port:
    never one the machine runs. If it cannot start, the tests that need it fail; they are never skipped."""
    from deploy.local_servers import start_postgres

    server = start_postgres()
    yield server.url
    server.stop()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private Redis (deploy/local_servers.py), started once per session on a free loopback port, persisting
    nothing. If it cannot start, the tests that need it fail; they are never skipped."""
    from deploy.local_servers import start_redis

    server = start_redis()
    yield server.url
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """Both databases, always: PostgreSQL is what a cluster stores the history in, and its dialect
    (types, time zones, locking) is where SQLite-only tests would let a bug through."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/history.sqlite3"
        return
    server = request.getfixturevalue("postgres_url")  # only PostgreSQL cases start the server
    schema = f"t{uuid.uuid4().hex[:12]}"  # a fresh schema per test: migrations run from nothing
    engine = create_engine(server)
    with engine.begin() as connection:
        connection.execute(text(f"CREATE SCHEMA {schema}"))
    yield f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
    with engine.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


UNIT = Path(__file__).resolve().parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything outside tests/unit is an integration test (``-m "not integration"`` leaves it out)."""
    for item in items:
        if UNIT not in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)
