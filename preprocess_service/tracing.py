"""OpenTelemetry traces: where one slow request spent its time, across the front, the database and
Triton. Off unless configured (``DEEPFAKE_OTLP_ENDPOINT``, or ``DEEPFAKE_TRACING`` where the process
already has a tracer provider, as the tests do); the API's no-op tracer costs nothing when off.

The maintained instrumentations do the plumbing: FastAPI (one server span per request), SQLAlchemy
(a span per statement, on the history's engine), and the gRPC and aiohttp clients that tritonclient
uses (a client span per Triton call, with the W3C ``traceparent`` passed on, so Triton started with
``--trace-config mode=opentelemetry`` joins the same trace). The pipeline adds the stages itself:
``decode``, ``faces``, ``backbone`` and ``head`` (pipeline.py).
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace

log = logging.getLogger("deepfake.tracing")
NOT_TRACED = "healthz,readyz,metrics,static"  # probes and scrapes would drown the requests
_clients_instrumented = False
_exporter_installed = False


def tracer() -> trace.Tracer:
    """The pipeline's tracer: follows whatever provider the process has (a no-op one by default)."""
    return trace.get_tracer("deepfake.pipeline")


def enabled(settings: Any) -> bool:
    return bool(settings.otlp_endpoint) or bool(settings.tracing)


def configure(settings: Any) -> None:
    """Once per process: an OTLP/HTTP exporter where an endpoint is given, and the client
    instrumentations (they patch gRPC's and aiohttp's clients for the whole process)."""
    global _clients_instrumented, _exporter_installed
    if settings.otlp_endpoint and not _exporter_installed:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):  # else one set around the app: export from it too
            provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
            trace.set_tracer_provider(provider)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otlp_endpoint)))
        _exporter_installed = True
        log.info("traces exported over OTLP to %s", settings.otlp_endpoint)
    if not _clients_instrumented:
        from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
        from opentelemetry.instrumentation.grpc import GrpcAioInstrumentorClient

        GrpcAioInstrumentorClient().instrument()
        AioHttpClientInstrumentor().instrument()
        _clients_instrumented = True


def instrument_app(app: Any) -> None:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls=NOT_TRACED)  # logs.RequestIds names the span's request


def instrument_engine(engine: Any) -> None:
    """The history's engine; the instrumentation also wraps ``create_engine`` for the whole process,
    so an engine made later (a history opened once its database is there) is traced too."""
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    # Its declared range stops before SQLAlchemy 2.1, whose engine events it uses are unchanged:
    # tests/test_traces.py shows the statements traced on 2.1.
    SQLAlchemyInstrumentor().instrument(engine=engine, skip_dep_check=True)


def stage(name: str, start_ns: int, end_ns: int, **attributes: Any) -> None:
    """A finished stage as a child of the current span, from times measured where it ran (decoding
    and face work run in worker threads, which the async request's context does not reach)."""
    span = tracer().start_span(name, start_time=start_ns, attributes=attributes)
    span.end(end_time=end_ns)
