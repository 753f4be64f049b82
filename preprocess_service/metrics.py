"""Prometheus metrics, in a registry of the app's own (several apps may live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deepfake_requests", "HTTP requests by route and status", ["route", "status"], registry=self.registry
        )
        self.stage_seconds = Histogram(
            "deepfake_stage_seconds",
            "time per analysis stage",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.backbone_batch = Histogram(
            "deepfake_backbone_batch_size",
            "face crops per backbone call",
            buckets=(1, 2, 4, 8, 16, 30, 32, 64, 128, 200),
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "deepfake_analyses_in_flight", "analyses admitted and not finished", registry=self.registry
        )
        self.rejected = Counter(
            "deepfake_overload_rejections", "requests refused with 503 overloaded", registry=self.registry
        )
        self.history_errors = Counter(
            "deepfake_history_errors",
            "history database failures (the answer was still given)",
            ["operation"],
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "deepfake_cache_hits", "answers given from the history without recomputing", registry=self.registry
        )
        self.job_seconds = Histogram(
            "deepfake_job_seconds",
            "a job's run, claim to outcome (done, failed, stopped: cancelled or taken back)",
            ["outcome"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600),
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "deepfake_jobs_finished", "job runs by outcome", ["outcome"], registry=self.registry
        )
        self.jobs = Gauge(
            "deepfake_jobs",
            "jobs by state, every owner's (read from the jobs table at scrape)",
            ["state"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "deepfake_jobs_queue_depth",
            "messages waiting in the jobs' broker (what the workers scale on)",
            registry=self.registry,
        )


class RequestCounter:
    """Pure ASGI middleware counting responses by route template and status (bodies pass untouched)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = scope.get("route")
            self.metrics.requests.labels(getattr(route, "path", "unmatched"), str(status["code"])).inc()
