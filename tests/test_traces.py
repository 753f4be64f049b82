"""OpenTelemetry traces of one request (issue 21), read from the SDK's in-memory exporter: the
server span of ``/predict/``, the stages in order inside it, the history's SQL statements and the
model calls inside the same trace, and the trace context passed on to Triton over gRPC.

The process gets one tracer provider (OpenTelemetry allows one per process); the services started
here trace into it because ``tracing`` is on. Before tracing existed no span was recorded at all.
"""

from __future__ import annotations

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from preprocess_service.settings import Settings
from testing.server import post_file, running_service

STAGES = ["decode", "faces", "backbone", "head"]


@pytest.fixture(scope="module")
def exporter() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # the first test module to trace sets the process's provider
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def _one_trace(exporter: InMemorySpanExporter, request_id: str) -> list:
    spans = exporter.get_finished_spans()
    roots = [s for s in spans if s.attributes.get("deepfake.request_id") == request_id and s.parent is None]
    assert len(roots) == 1, [(s.name, dict(s.attributes)) for s in spans]
    return [s for s in spans if s.context.trace_id == roots[0].context.trace_id]


def test_one_predict_is_one_trace_with_the_stages_the_database_and_the_model(
    exporter, demo_repository, seed_videos, tmp_path
):
    settings = Settings(
        model_repository=demo_repository,
        keys_dir=tmp_path / "keys",
        database_url=f"sqlite:///{tmp_path}/history.sqlite3",
        tracing=True,
    )
    with running_service(settings) as url:
        exporter.clear()
        response = post_file(url, seed_videos[2], headers={"X-Request-ID": "trace-me-1"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "trace-me-1"
        assert httpx.get(url + "/readyz").status_code == 200  # probes are left out of the traces
    spans = _one_trace(exporter, "trace-me-1")
    root = next(s for s in spans if s.parent is None)
    assert root.kind == trace.SpanKind.SERVER and "/predict/" in root.name
    stages = sorted((s for s in spans if s.name in STAGES), key=lambda s: STAGES.index(s.name))
    assert [s.name for s in stages] == STAGES, [s.name for s in spans]
    decode, faces, backbone, head = stages
    assert decode.end_time <= faces.start_time + 1_000  # the face work left once decoding ended
    # the backbone starts on the first crops while decoding goes on (DEEPFAKE_OVERLAP_CHUNK), the head after it
    assert decode.start_time <= backbone.start_time and backbone.end_time <= head.start_time + 1_000
    assert faces.end_time <= head.start_time + 1_000
    for stage in stages:
        assert stage.parent.span_id == root.context.span_id
        assert root.start_time <= stage.start_time and stage.end_time <= root.end_time
    assert stages[2].attributes["backend"] == "embedded" and stages[2].attributes["batch"] > 0
    statements = [s for s in spans if s.attributes.get("db.system") == "sqlite"]
    assert any("INSERT" in s.name.upper() or "INSERT" in str(s.attributes.get("db.statement", "")) for s in statements)
    assert all(root.start_time <= s.start_time and s.end_time <= root.end_time for s in statements)
    assert not any("readyz" in s.name for s in exporter.get_finished_spans())


def test_the_trace_context_reaches_triton_over_grpc(exporter, triton, seed_videos, tmp_path):
    settings = Settings(
        backend="triton-grpc", triton_grpc_url=triton.grpc_url, keys_dir=tmp_path / "keys", history=False, tracing=True
    )
    with running_service(settings) as url:
        exporter.clear()
        assert post_file(url, seed_videos[2], headers={"X-Request-ID": "trace-me-2"}).status_code == 200
    spans = _one_trace(exporter, "trace-me-2")
    calls = [s for s in spans if s.kind == trace.SpanKind.CLIENT and s.attributes.get("rpc.system") == "grpc"]
    infer = [s for s in calls if s.attributes.get("rpc.method") == "ModelInfer"]
    assert len(infer) >= 2, [(s.name, dict(s.attributes)) for s in calls]  # the backbone and the head, at least
    backbone = next(s for s in spans if s.name == "backbone")
    assert any(backbone.start_time <= s.start_time and s.end_time <= backbone.end_time for s in infer)
