"""Access over real HTTP: API keys (hashed), per-caller rate limits, CORS, offline docs, error bodies."""

from __future__ import annotations

import httpx
import pytest

from preprocess_service.access import ApiKey, hash_key, parse_api_keys
from preprocess_service.settings import Settings
from testing.server import post_file, running_service

KEY = "s3cret-key-for-tests"
PAYLOAD = b"any bytes at all" * 100


@pytest.fixture(scope="module")
def keyed_service(demo_repository, tmp_path_factory):
    settings = Settings(
        model_repository=demo_repository,
        keys_dir=tmp_path_factory.mktemp("keys"),
        api_keys=f"ci:{hash_key(KEY)},other:{hash_key('other-key')}",
        signing_rate_limit="3/minute",
    )
    with running_service(settings) as url:
        yield url


@pytest.fixture(scope="module")
def open_service(demo_repository, tmp_path_factory):
    settings = Settings(
        model_repository=demo_repository, keys_dir=tmp_path_factory.mktemp("keys"), cors_origins=["https://app.example"]
    )
    with running_service(settings) as url:
        yield url


def test_signing_needs_a_valid_key_when_keys_are_configured(keyed_service):
    missing = post_file(keyed_service, PAYLOAD, "/integrity/sign")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    wrong = post_file(keyed_service, PAYLOAD, "/integrity/sign", headers={"X-API-Key": "guess"})
    assert wrong.status_code == 401
    assert post_file(keyed_service, PAYLOAD, "/integrity/sign", headers={"X-API-Key": KEY}).status_code == 200
    bearer = post_file(keyed_service, PAYLOAD, "/integrity/sign", headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200


def test_signing_is_rate_limited_per_key(keyed_service):
    """3 per minute for key 'other' (the key 'ci' has its own window)."""
    headers = {"X-API-Key": "other-key"}
    codes = [post_file(keyed_service, PAYLOAD, "/integrity/sign", headers=headers).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    limited = post_file(keyed_service, PAYLOAD, "/integrity/sign", headers=headers)
    assert limited.json()["error"]["code"] == "rate_limited" and int(limited.headers["retry-after"]) >= 1


def test_other_routes_stay_open_unless_keys_are_required_everywhere(keyed_service, demo_repository, tmp_path):
    signature = "AAAA"
    assert (
        post_file(keyed_service, PAYLOAD, "/integrity/verify", data={"signature_base64": signature}).status_code == 200
    )
    settings = Settings(
        model_repository=demo_repository, keys_dir=tmp_path, api_keys=f"ci:{hash_key(KEY)}", require_api_key=True
    )
    with running_service(settings) as url:
        assert post_file(url, PAYLOAD, "/integrity/verify", data={"signature_base64": signature}).status_code == 401
        assert post_file(url, PAYLOAD, "/predict/").status_code == 401
        assert httpx.get(url + "/healthz").status_code == 200 and httpx.get(url + "/readyz").status_code == 200
        assert httpx.get(url + "/integrity/public-key").status_code == 200  # public by nature


def test_the_key_list_holds_only_hashes_and_is_checked():
    assert parse_api_keys(f"a:{hash_key('x')}") == {hash_key("x"): ApiKey("a")}
    assert parse_api_keys(f"ops:{hash_key('y')}:operator") == {hash_key("y"): ApiKey("ops", operator=True)}
    with pytest.raises(ValueError, match="unknown flag"):
        parse_api_keys(f"a:{hash_key('x')}:admin")
    with pytest.raises(ValueError, match="not id:sha256-hex"):
        parse_api_keys("a:plaintext-key")


def test_cors_is_off_by_default_and_configurable(keyed_service, open_service):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    assert "access-control-allow-origin" not in httpx.options(keyed_service + "/predict/", headers=preflight).headers
    allowed = httpx.options(open_service + "/predict/", headers=preflight)
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    other = httpx.options(open_service + "/predict/", headers={**preflight, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_docs_load_their_assets_from_the_service_itself(open_service):
    page = httpx.get(open_service + "/docs").text
    assert "cdn" not in page.lower() and "/static-offline-docs/swagger-ui-bundle.js" in page
    script = httpx.get(open_service + "/static-offline-docs/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 500_000
    redoc = httpx.get(open_service + "/redoc").text
    assert (
        "cdn" not in redoc.lower()
        and httpx.get(open_service + "/static-offline-docs/redoc.standalone.js").status_code == 200
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/no-such-route", 404, "not_found"),
        ("GET", "/predict/", 405, "method_not_allowed"),
        ("DELETE", "/integrity/sign", 405, "method_not_allowed"),
    ],
)
def test_framework_errors_use_the_documented_body(open_service, method, path, status, code):
    response = httpx.request(method, open_service + path)
    assert response.status_code == status and response.json()["error"]["code"] == code
