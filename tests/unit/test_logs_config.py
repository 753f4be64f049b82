"""The log configuration and request ids (preprocess_service/logs.py), without a server."""

from __future__ import annotations

import io
import json
import logging

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from preprocess_service.logs import (
    JsonLines,
    RequestIdFilter,
    RequestIds,
    current_request_id,
    log_config,
    request_id_of,
)


def test_a_sane_caller_id_is_kept_and_anything_else_replaced() -> None:
    assert request_id_of("trace-42:a.b_c") == "trace-42:a.b_c"
    for hostile in (None, "", "x" * 129, "a b", "id\nInjected: line", "<script>"):
        made = request_id_of(hostile)
        assert made != hostile and len(made) == 32


def test_json_lines_have_time_level_logger_and_the_current_request_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines("%(message)s"))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("deepfake.unit-test-logs")  # a logger of its own: the global setup is untouched
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.INFO
    token = current_request_id.set("req-1")
    try:
        logger.info("hello %s", "world")
    finally:
        current_request_id.reset(token)
    logger.warning("outside a request")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["level"], line["message"], line["request_id"]) for line in lines] == [
        ("deepfake.unit-test-logs", "INFO", "hello world", "req-1"),
        ("deepfake.unit-test-logs", "WARNING", "outside a request", None),
    ]
    assert lines[0]["time"].endswith("+00:00")


def test_the_configuration_sets_a_level_per_logger_and_one_format() -> None:
    config = log_config("json", "info", "deepfake.history=debug, uvicorn.access=warning")
    assert config["loggers"]["deepfake"]["level"] == "INFO"
    assert config["loggers"]["deepfake.history"]["level"] == "DEBUG"
    assert config["loggers"]["uvicorn.access"]["level"] == "WARNING"
    assert config["formatters"]["default"]["()"] is JsonLines
    assert "format" in log_config("text", "info", "")["formatters"]["default"]


def test_the_middleware_answers_the_id_and_sets_it_for_the_request() -> None:
    seen: list[str | None] = []

    async def endpoint(request):
        seen.append(current_request_id.get())
        return PlainTextResponse("ok")

    client = TestClient(RequestIds(Starlette(routes=[Route("/", endpoint)])))
    given = client.get("/", headers={"X-Request-ID": "abc-1"})
    made = client.get("/")
    assert given.headers["x-request-id"] == "abc-1" and seen[0] == "abc-1"
    assert made.headers["x-request-id"] == seen[1] and len(seen[1] or "") == 32
    assert current_request_id.get() is None  # reset after each request
