"""The service's log: one configuration for its own loggers and uvicorn's, a request id on every line.

uvicorn configures only ``uvicorn.*``; without this the ``deepfake.*`` warnings reached stderr
through Python's last-resort handler (the message alone: no time, no level) and info lines were
dropped. ``log_config(settings)`` is a ``logging.config.dictConfig`` mapping that ``deepfake-serve``
hands to uvicorn: JSON lines (python-json-logger: ``time`` in ISO 8601 UTC, ``level``, ``logger``,
``message``, ``request_id``) with ``DEEPFAKE_LOG_FORMAT=json`` — what the container image sets —
or readable lines on a laptop (``text``, the default); ``DEEPFAKE_LOG_LEVEL`` for all and
``DEEPFAKE_LOG_LEVELS=deepfake.history=debug,uvicorn.access=warning`` per logger.

The request id is the caller's ``X-Request-ID`` when it is a sane token (at most 128 characters of
``[A-Za-z0-9._:-]``), else a new one; it is answered in the ``X-Request-ID`` header, stored with
the history row and carried on every log line written while the request is handled (a context
variable, so lines from the route, the history and uvicorn's access line all have it).
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"


class RequestIdFilter(logging.Filter):
    """Puts the current request's id (or None outside a request) on every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id.get()
        return True


class JsonLines(JsonFormatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, request_id, and extras."""

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        super().add_fields(log_record, record, message_dict)
        log_record["time"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        log_record["level"] = record.levelname
        log_record["logger"] = record.name
        log_record["request_id"] = getattr(record, "request_id", None)


def log_config(log_format: str, level: str, levels: str) -> dict[str, Any]:
    """The dictConfig for the service's loggers and uvicorn's. ``levels``: ``name=level,...``."""
    per_logger = {
        name.strip(): {"level": value.strip().upper()}
        for name, _, value in (entry.partition("=") for entry in levels.split(",") if "=" in entry)
    }
    formatter: dict[str, Any] = (
        {"()": JsonLines, "fmt": "%(message)s"} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "loggers": {
            "deepfake": {"level": level.upper()},
            "uvicorn": {"level": level.upper()},
            "uvicorn.error": {"level": level.upper()},
            "uvicorn.access": {"level": level.upper()},
            **per_logger,
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def request_id_of(header: str | None) -> str:
    return header if header and SANE_REQUEST_ID.match(header) else uuid.uuid4().hex


class RequestIds:
    """Pure ASGI middleware: the request's id in the context for its log lines, in its answer, and on
    its trace (the FastAPI instrumentation wraps the whole stack, so its span is current here)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = request_id_of(given)
        token = current_request_id.set(request_id)
        span = trace.get_current_span()  # the request's server span where tracing is on (tracing.py)
        if span.is_recording():
            span.set_attribute("deepfake.request_id", request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            current_request_id.reset(token)
