"""Limits that hold, over real HTTP: failed authentications count, a client cannot pick its own
address with ``X-Forwarded-For``, and two service processes sharing a real Redis allow one limit.

Each failed on the service before (seen: 300 wrong keys gave 300 x 401 and no 429; a new
``X-Forwarded-For`` reset the per-address limit, uvicorn trusting it from 127.0.0.1; the counters
were per process, so two processes allowed twice the limit).
"""

from __future__ import annotations

import httpx

from deploy.ports import free_port
from preprocess_service.access import hash_key
from preprocess_service.settings import Settings
from testing.server import running_service, serve_process


def test_failed_authentications_count_toward_a_per_address_limit(demo_repository, tmp_path):
    settings = Settings(
        model_repository=demo_repository,
        keys_dir=tmp_path / "keys",
        database_url=f"sqlite:///{tmp_path}/h.sqlite3",
        api_keys=f"a:{hash_key('right-key')}",
        auth_failure_limit="5/minute",
    )
    with running_service(settings) as url:
        codes = [httpx.get(url + "/stats", headers={"X-API-Key": f"guess-{i}"}).status_code for i in range(8)]
        assert codes == [401] * 5 + [429] * 3
        locked = httpx.get(url + "/stats", headers={"X-API-Key": "right-key"})  # no more guesses from here
        assert locked.status_code == 429 and locked.json()["error"]["code"] == "rate_limited"
        assert int(locked.headers["retry-after"]) >= 1


def _stats_codes(url: str, forwarded_for: list[str]) -> list[int]:
    return [httpx.get(url + "/stats", headers={"X-Forwarded-For": ip}).status_code for ip in forwarded_for]


def test_forwarded_addresses_are_believed_only_from_trusted_proxies(demo_repository, tmp_path):
    common = {
        "model_repository": demo_repository,
        "keys_dir": tmp_path / "keys",
        "database_url": f"sqlite:///{tmp_path}/h.sqlite3",
        "rate_limit": "3/minute",
    }
    spoofed = [f"203.0.113.{i}" for i in range(5)]
    with running_service(Settings(**common)) as url:  # the default: no proxy is trusted
        assert _stats_codes(url, spoofed) == [200, 200, 200, 429, 429]
    with running_service(Settings(**common, trusted_proxies="127.0.0.1")) as url:  # behind a proxy on loopback
        assert _stats_codes(url, spoofed) == [200] * 5  # each forwarded client has its own window
        assert _stats_codes(url, ["198.51.100.7"] * 4) == [200, 200, 200, 429]


def test_two_processes_sharing_redis_allow_one_limit(demo_repository, redis_url, tmp_path):
    shared = {"DEEPFAKE_RATE_LIMIT": "4/minute", "DEEPFAKE_RATE_LIMIT_STORAGE": redis_url}
    first_folder, second_folder = tmp_path / "one", tmp_path / "two"
    first_folder.mkdir()
    second_folder.mkdir()
    with (
        serve_process(demo_repository, first_folder, shared) as first,
        serve_process(demo_repository, second_folder, shared) as second,
    ):
        codes = [httpx.get(url + "/stats").status_code for url in [first, second] * 4]
        assert sorted(codes) == [200] * 4 + [429] * 4, codes
        assert codes[:4] == [200] * 4  # alternating: each process counted the other's requests


def test_a_failing_shared_storage_lets_requests_through(demo_repository, tmp_path):
    """Redis down must not become the service down: the limit is skipped (and logged), never a 500."""
    settings = Settings(
        model_repository=demo_repository,
        keys_dir=tmp_path / "keys",
        database_url=f"sqlite:///{tmp_path}/h.sqlite3",
        rate_limit_storage=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    )
    with running_service(settings) as url:
        assert httpx.get(url + "/stats", timeout=30).status_code == 200
