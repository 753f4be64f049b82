"""DEEPFAKE_DATABASE_SSLMODE against a real PostgreSQL: the private server the session starts
(deploy/local_servers.py) has no TLS, so a configured ``require`` must refuse it (even where the URL
says ``sslmode=disable``), and the service must say so in /readyz (degraded) rather than fail;
``prefer`` and no setting connect."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import OperationalError
from starlette.testclient import TestClient

from preprocess_service.app import create_app
from preprocess_service.history.store import HEAD_REVISION, HistoryStore
from preprocess_service.settings import Settings
from testing.fake_backend import FakeBackend

postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


@postgres_only
@pytest.mark.parametrize("query", ["", "&sslmode=disable"])
def test_require_refuses_a_server_without_tls(database_url, query):
    store = HistoryStore(database_url + query, sslmode="require")
    try:
        with pytest.raises(OperationalError, match="SSL"):
            store.migrate()
        with pytest.raises(OperationalError, match="SSL"):
            store.revision()  # the store's own engine too, not only the migration's
    finally:
        store.close()


@postgres_only
@pytest.mark.parametrize("sslmode", ["prefer", None])
def test_prefer_or_nothing_connects_without_tls(database_url, sslmode):
    store = HistoryStore(database_url, sslmode=sslmode)
    try:
        store.migrate()
        assert store.revision() == HEAD_REVISION
    finally:
        store.close()


@postgres_only
@pytest.mark.parametrize(("sslmode", "history"), [("require", "degraded"), ("prefer", "ok")])
def test_readyz_says_degraded_when_tls_is_refused(database_url, tmp_path, sslmode, history):
    settings = Settings(database_url=database_url, database_sslmode=sslmode, keys_dir=tmp_path / "keys")
    with TestClient(create_app(settings, backend=FakeBackend())) as client:
        ready = client.get("/readyz")
    assert ready.status_code == 200  # answers are still given: the history only is missing
    body = ready.json()
    assert body["history"]["status"] == history
    if history == "degraded":
        assert body["status"] == "degraded"
        assert body["history"]["error"] == "the history database cannot be opened: OperationalError"
    assert "127.0.0.1" not in ready.text and "search_path" not in ready.text  # nothing of the URL
