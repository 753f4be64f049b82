"""DEEPFAKE_SECRETS_DIR: settings read from files (Kubernetes Secrets mounted as files), and PostgreSQL's
TLS settings turned into the engine's connect arguments (preprocess_service.history.store.engine_options)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event
from starlette.testclient import TestClient

from preprocess_service.access import hash_key
from preprocess_service.app import create_app
from preprocess_service.history.store import engine_options
from preprocess_service.settings import Settings
from testing.fake_backend import FakeBackend

CREDENTIALS = ("DEEPFAKE_API_KEYS", "DEEPFAKE_DATABASE_URL", "DEEPFAKE_RATE_LIMIT_STORAGE", "DEEPFAKE_SECRETS_DIR")


@pytest.fixture(autouse=True)
def no_credentials_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The session's fixture sets DEEPFAKE_DATABASE_URL: it would win over every file here."""
    for name in CREDENTIALS:
        monkeypatch.delenv(name, raising=False)


def secrets(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        (folder / name).write_text(value)
    return folder


KEYS = f"alice:{hash_key('alice-key')},bob:{hash_key('bob-key')}"
URL = "postgresql+psycopg://deepfake:s3cret@db:5432/deepfake"


def test_the_three_files_give_their_values(tmp_path, monkeypatch):
    folder = secrets(
        tmp_path / "secrets",
        deepfake_api_keys=KEYS,
        deepfake_database_url=URL,
        deepfake_rate_limit_storage="redis://:pw@redis:6379/0",
    )
    monkeypatch.setenv("DEEPFAKE_SECRETS_DIR", str(folder))
    settings = Settings()
    assert settings.secrets_dir == folder
    assert (settings.api_keys, settings.database_url, settings.rate_limit_storage) == (
        KEYS,
        URL,
        "redis://:pw@redis:6379/0",
    )
    assert Settings(secrets_dir=folder).database_url == URL  # given at init, not in the environment
    for secret in (KEYS, URL, "pw@redis"):  # never in the settings' repr (a log line, a traceback)
        assert secret not in repr(settings)


def test_a_file_name_matches_whatever_its_case(tmp_path):
    folder = secrets(tmp_path / "secrets", DEEPFAKE_DATABASE_URL=URL)
    assert Settings(secrets_dir=folder).database_url == URL


def test_the_environment_and_init_win_over_a_file(tmp_path, monkeypatch):
    folder = secrets(tmp_path / "secrets", deepfake_database_url=URL, deepfake_api_keys=KEYS)
    monkeypatch.setenv("DEEPFAKE_SECRETS_DIR", str(folder))
    monkeypatch.setenv("DEEPFAKE_DATABASE_URL", "sqlite:///from-env.sqlite3")
    settings = Settings()
    assert settings.database_url == "sqlite:///from-env.sqlite3" and settings.api_keys == KEYS
    assert Settings(api_keys="").api_keys == ""


def test_a_trailing_newline_is_stripped(tmp_path):
    folder = secrets(tmp_path / "secrets", deepfake_database_url=URL + "\n")  # what `echo >` and editors write
    assert Settings(secrets_dir=folder).database_url == URL


@pytest.mark.parametrize("given", ["environment", "init"])
def test_a_directory_that_is_not_there_stops_the_start(tmp_path, monkeypatch, given):
    missing = tmp_path / "mistyped" / "secrets"
    with pytest.raises(ValueError, match=re.escape(f"DEEPFAKE_SECRETS_DIR '{missing}' does not exist")):
        if given == "environment":
            monkeypatch.setenv("DEEPFAKE_SECRETS_DIR", str(missing))
            Settings()
        else:
            Settings(secrets_dir=missing)
    a_file = secrets(tmp_path / "s", deepfake_api_keys=KEYS) / "deepfake_api_keys"
    with pytest.raises(ValueError, match="is not a directory"):
        Settings(secrets_dir=a_file)


def test_an_empty_secrets_dir_is_none(monkeypatch):
    monkeypatch.setenv("DEEPFAKE_SECRETS_DIR", "")
    assert Settings().secrets_dir is None


def test_keys_from_a_file_authenticate(tmp_path, monkeypatch):
    folder = secrets(tmp_path / "secrets", deepfake_api_keys=KEYS + "\n")
    monkeypatch.setenv("DEEPFAKE_SECRETS_DIR", str(folder))
    settings = Settings(
        keys_dir=tmp_path / "keys", database_url=f"sqlite:///{tmp_path}/h.sqlite3", require_api_key=True
    )
    with TestClient(create_app(settings, backend=FakeBackend())) as client:
        assert client.get("/analyses", headers={"X-API-Key": "bob-key"}).status_code == 200
        assert client.get("/analyses", headers={"X-API-Key": "alice-key"}).status_code == 200
        wrong = client.get("/analyses", headers={"X-API-Key": "mallory-key"})
        assert wrong.status_code == 401
        ready = client.get("/readyz").text
    assert hash_key("bob-key") not in ready and "alice" not in ready


# PostgreSQL's TLS: DEEPFAKE_DATABASE_SSLMODE / DEEPFAKE_DATABASE_SSLROOTCERT


def test_a_postgres_url_gets_the_configured_tls():
    assert engine_options(URL, "verify-full", Path("/etc/ca/root.crt")) == {
        "connect_args": {"sslmode": "verify-full", "sslrootcert": "/etc/ca/root.crt"}
    }
    assert engine_options(URL, "require") == {"connect_args": {"sslmode": "require"}}
    assert engine_options(URL) == {}  # nothing configured: the URL (and libpq's default) decide


def test_the_configured_sslmode_is_a_floor_the_url_cannot_lower():
    assert engine_options(URL + "?sslmode=disable", "verify-full") == {"connect_args": {"sslmode": "verify-full"}}
    assert engine_options(URL + "?sslmode=verify-full", "require") == {"connect_args": {"sslmode": "verify-full"}}
    assert engine_options(URL + "?sslmode=nonsense", "prefer") == {"connect_args": {"sslmode": "prefer"}}
    with pytest.raises(ValueError, match="DEEPFAKE_DATABASE_SSLMODE"):
        engine_options(URL, "on")


def test_the_driver_is_given_the_configured_sslmode_not_the_urls():
    """What psycopg would receive: SQLAlchemy merges connect_args over the URL's query."""
    url = URL + "?sslmode=disable&application_name=deepfake"
    engine = create_engine(url, **engine_options(url, "verify-full", "/ca.pem"))
    received: dict = {}

    class Stop(Exception):
        pass

    @event.listens_for(engine, "do_connect")
    def capture(dialect, record, cargs, cparams):
        received.update(cparams)
        raise Stop

    with pytest.raises(Stop):
        engine.connect()
    assert received["sslmode"] == "verify-full" and received["sslrootcert"] == "/ca.pem"
    assert received["application_name"] == "deepfake"  # the rest of the query still applies


def test_sqlite_ignores_the_tls_settings():
    assert engine_options("sqlite:///var/history.sqlite3", "verify-full", "/ca.pem") == {}
    assert engine_options("sqlite://", "require") == {}


def test_the_settings_take_the_sslmodes_libpq_knows(monkeypatch):
    monkeypatch.setenv("DEEPFAKE_DATABASE_SSLMODE", "verify-ca")
    monkeypatch.setenv("DEEPFAKE_DATABASE_SSLROOTCERT", "/etc/ca/root.crt")
    settings = Settings()
    assert (settings.database_sslmode, settings.database_sslrootcert) == ("verify-ca", Path("/etc/ca/root.crt"))
    monkeypatch.setenv("DEEPFAKE_DATABASE_SSLMODE", "on")
    with pytest.raises(ValueError, match="database_sslmode"):
        Settings()
