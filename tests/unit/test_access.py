"""preprocess_service.access: API keys, owners, the operator role and the rate limits.

Who a caller is decides whose analyses it sees and erases (tenancy), so the open laptop mode, the
optional and required key modes, the operator's view, the failed-authentication limit (keys cannot
be guessed at network speed) and the per-caller limits are checked on real starlette Requests.
"""

from __future__ import annotations

import pytest
from starlette.requests import Request

from preprocess_service.access import (
    SHARED_OWNER,
    AccessPolicy,
    ApiKey,
    Caller,
    access_policy,
    hash_key,
    parse_api_keys,
    server_options,
)
from preprocess_service.errors import RateLimited, Unauthorized

ALICE_KEY, OPS_KEY = "alice-secret-key", "operator-secret-key"
KEYS = f"alice:{hash_key(ALICE_KEY)},ops:{hash_key(OPS_KEY)}:operator"


def request_of(headers: dict[str, str] | None = None, client: tuple[str, int] | None = ("10.0.0.1", 40000)) -> Request:
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "query_string": b"",
        "headers": [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()],
        "client": client,
    }
    return Request(scope)


def keyed(key: str, address: str = "10.0.0.1") -> Request:
    return request_of({"X-API-Key": key}, (address, 40000))


def policy(
    api_keys: str = KEYS,
    required: bool = False,
    rate: str = "100/minute",
    signing: str = "100/minute",
    failures: str = "3/minute",
) -> AccessPolicy:
    return access_policy(api_keys, required, rate, signing, failures)


# --- parse_api_keys -----------------------------------------------------------------------------


def test_parse_api_keys_reads_ids_digests_and_the_operator_flag() -> None:
    keys = parse_api_keys(KEYS)
    assert keys == {hash_key(ALICE_KEY): ApiKey("alice", False), hash_key(OPS_KEY): ApiKey("ops", True)}


def test_parse_api_keys_of_nothing_is_no_keys() -> None:
    assert parse_api_keys("") == {}
    assert parse_api_keys(" , ,") == {}


def test_parse_api_keys_ignores_spaces_and_empty_entries_and_lowercases_digests() -> None:
    digest = hash_key(ALICE_KEY)
    assert parse_api_keys(f" alice:{digest.upper()} ,, ") == {digest: ApiKey("alice")}


@pytest.mark.parametrize(
    "entry",
    [
        "alice",  # no digest
        f":{'a' * 64}",  # no id
        "alice:abc123",  # too short
        f"alice:{'a' * 65}",  # too long
        f"alice:{'g' * 64}",  # not hex
        f"alice:{'a' * 64}:admin",  # unknown flag
        f"{'k' * 65}:{'a' * 64}",  # id too long
    ],
)
def test_parse_api_keys_refuses_a_bad_entry(entry: str) -> None:
    with pytest.raises(ValueError):
        parse_api_keys(f"good:{'b' * 64},{entry}")


def test_a_key_id_of_64_characters_is_allowed() -> None:
    assert parse_api_keys(f"{'k' * 64}:{'a' * 64}") == {"a" * 64: ApiKey("k" * 64)}


# --- who is calling -----------------------------------------------------------------------------


def test_open_mode_every_caller_is_the_shared_owner() -> None:
    open_policy = policy(api_keys="")
    assert open_policy.open
    caller = open_policy.admit(request_of())
    assert caller == Caller(SHARED_OWNER, operator=False, rate_key="ip:10.0.0.1")
    assert caller.owner_filter == "local"
    # a key sent anyway changes nothing; signing needs nothing either
    assert open_policy.admit(keyed("anything"), signing=True).owner == SHARED_OWNER


def test_keys_configured_a_caller_without_a_key_owns_nothing() -> None:
    caller = policy().admit(request_of())
    assert caller.owner is None
    assert caller.owner_filter is None and not caller.sees_all  # owner None, but not the operator
    assert caller.rate_key == "ip:10.0.0.1"


def test_keys_required_a_caller_without_a_key_is_unauthorized() -> None:
    with pytest.raises(Unauthorized) as raised:
        policy(required=True).admit(request_of())
    assert raised.value.status_code == 401
    assert raised.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_signing_needs_a_key_even_when_keys_are_optional() -> None:
    with pytest.raises(Unauthorized):
        policy().admit(request_of(), signing=True)


def test_the_key_in_x_api_key_identifies_its_owner() -> None:
    caller = policy(required=True).admit(keyed(ALICE_KEY))
    assert caller == Caller("alice", operator=False, rate_key="key:alice")
    assert caller.owner_filter == "alice"


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_key_as_a_bearer_token_identifies_its_owner(scheme: str) -> None:
    caller = policy(required=True).admit(request_of({"Authorization": f"{scheme} {ALICE_KEY}"}))
    assert caller.owner == "alice"


def test_a_basic_authorization_header_is_no_key() -> None:
    with pytest.raises(Unauthorized):
        policy(required=True).admit(request_of({"Authorization": f"Basic {ALICE_KEY}"}))


def test_the_operator_key_sees_every_owner() -> None:
    caller = policy().admit(keyed(OPS_KEY))
    assert caller.owner == "ops" and caller.operator and caller.sees_all
    assert caller.owner_filter is None


def test_a_wrong_key_is_unauthorized_even_where_keys_are_optional() -> None:
    with pytest.raises(Unauthorized, match="not valid"):
        policy().admit(keyed("wrong-key"))


def test_a_key_digest_is_not_a_key() -> None:
    with pytest.raises(Unauthorized):
        policy().admit(keyed(hash_key(ALICE_KEY)))


# --- rate limits --------------------------------------------------------------------------------


def test_after_the_failure_limit_even_the_right_key_is_rate_limited() -> None:
    access = policy(failures="3/minute")
    for _ in range(3):
        with pytest.raises(Unauthorized):
            access.admit(keyed("guess"))
    with pytest.raises(RateLimited) as raised:
        access.admit(keyed(ALICE_KEY))
    assert raised.value.status_code == 429
    assert 1 <= int(raised.value.headers["Retry-After"]) <= 60


def test_failed_authentications_count_per_address() -> None:
    access = policy(failures="3/minute")
    for _ in range(3):
        with pytest.raises(Unauthorized):
            access.admit(keyed("guess", address="10.0.0.9"))
    assert access.admit(keyed(ALICE_KEY, address="10.0.0.2")).owner == "alice"


def test_a_missing_key_where_one_is_required_counts_as_a_failure() -> None:
    access = policy(required=True, failures="2/minute")
    for _ in range(2):
        with pytest.raises(Unauthorized):
            access.admit(request_of())
    with pytest.raises(RateLimited):
        access.admit(keyed(ALICE_KEY))


def test_successful_authentications_do_not_count_as_failures() -> None:
    access = policy(failures="2/minute")
    for _ in range(5):
        assert access.admit(keyed(ALICE_KEY)).owner == "alice"


def test_the_general_limit_gives_rate_limited_with_retry_after() -> None:
    access = policy(rate="3/minute")
    for _ in range(3):
        access.admit(keyed(ALICE_KEY))
    with pytest.raises(RateLimited) as raised:
        access.admit(keyed(ALICE_KEY))
    retry_after = int(raised.value.headers["Retry-After"])
    assert 1 <= retry_after <= 60


def test_the_general_limit_is_per_key_not_per_address() -> None:
    access = policy(rate="2/minute")
    for _ in range(2):
        access.admit(keyed(ALICE_KEY))
    with pytest.raises(RateLimited):
        access.admit(keyed(ALICE_KEY))
    assert access.admit(keyed(OPS_KEY)).owner == "ops"  # same address, another key: its own window


def test_callers_without_a_key_are_limited_per_address() -> None:
    access = policy(rate="2/minute")
    for _ in range(2):
        access.admit(request_of(client=("10.0.0.5", 1)))
    with pytest.raises(RateLimited):
        access.admit(request_of(client=("10.0.0.5", 2)))
    assert access.admit(request_of(client=("10.0.0.6", 1))).owner is None


def test_the_signing_limit_is_separate_from_the_general_limit() -> None:
    access = policy(rate="100/minute", signing="2/minute")
    for _ in range(2):
        access.admit(keyed(ALICE_KEY), signing=True)
    with pytest.raises(RateLimited):
        access.admit(keyed(ALICE_KEY), signing=True)
    assert access.admit(keyed(ALICE_KEY)).owner == "alice"  # analyzing is still allowed


def test_open_mode_is_rate_limited_too() -> None:
    access = policy(api_keys="", rate="2/minute")
    for _ in range(2):
        access.admit(request_of())
    with pytest.raises(RateLimited):
        access.admit(request_of())


def test_a_request_without_a_client_address_is_limited_as_unknown() -> None:
    assert policy(api_keys="").admit(request_of(client=None)).rate_key == "ip:unknown"


def test_an_async_rate_limit_storage_is_refused() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        access_policy("", False, "1/minute", "1/minute", storage_url="async+memory://")


# --- proxies ------------------------------------------------------------------------------------


def test_no_trusted_proxies_means_no_proxy_headers() -> None:
    assert server_options("") == {"proxy_headers": False, "forwarded_allow_ips": ""}
    assert server_options(" , ") == {"proxy_headers": False, "forwarded_allow_ips": ""}


def test_trusted_proxies_are_passed_to_uvicorn_without_spaces() -> None:
    assert server_options(" 10.0.0.1 , 10.1.0.0/16 ") == {
        "proxy_headers": True,
        "forwarded_allow_ips": "10.0.0.1,10.1.0.0/16",
    }
