"""Schemathesis against the service's own OpenAPI schema, over real HTTP: no server error for any
generated request, and every status and body it returns is documented in the schema."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from preprocess_service.settings import Settings
from testing.server import running_service

MAX_EXAMPLES = 25  # per operation: bounded, so the whole schema is fuzzed in about a minute
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(demo_repository, tmp_path_factory):
    config = Settings(
        model_repository=demo_repository,
        keys_dir=tmp_path_factory.mktemp("fuzz_keys"),
        upload_dir=tmp_path_factory.mktemp("fuzz_uploads"),
        rate_limit="100000/minute",
        signing_rate_limit="100000/minute",
        max_upload_mb=2,
    )
    with running_service(config) as url:
        yield url, schemathesis.openapi.from_url(url + "/openapi.json")


def _requests_served(url: str) -> dict[str, float]:
    """Per route and status, from the service's own Prometheus counter."""
    counts: dict[str, float] = {}
    for line in httpx.get(url + "/metrics").text.splitlines():
        if line.startswith("deepfake_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels] = float(value)
    return counts


def test_no_server_error_and_every_answer_is_documented(api_schema):
    url, schema = api_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict/", "/predict_csv/", "/integrity/sign", "/integrity/verify"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case) -> None:
            case.call_and_validate(checks=CHECKS, timeout=60)

        fuzz()
    served = _requests_served(url)
    assert sum(served.values()) >= 5 * len(operations), served  # the fuzzer really sent requests
    assert not [labels for labels in served if 'status="5' in labels and 'status="503' not in labels], served
