"""One job, start to end, wherever it runs (a deepfake-worker, or the service itself when embedded).

Claim it (or leave it: cancelled, or another worker has it) → the timeline, reported after each
chunk (each report renews the lease and says whether to go on) → the ``/predict/`` answer of the
same file, by the same code, owned and stored as the caller's → finish, only if this attempt still
holds the job → the video deleted → the webhook. A failure is the job's (``failed`` with the error's
code), never the worker's: the next message runs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from preprocess_service.access import Caller
from preprocess_service.errors import ServiceError
from preprocess_service.history.models import JobRecord
from preprocess_service.jobs.store import JobStore
from preprocess_service.jobs.timeline import Stopped, Timeline, TimelineAnalyzer, TimelineOptions
from preprocess_service.jobs.webhooks import DeliveryResult, WebhookPolicy, deliver, owner_secret
from preprocess_service.metrics import Metrics
from preprocess_service.pipeline import Analyzer
from preprocess_service.predictions import Predictions
from preprocess_service.settings import Settings
from preprocess_service.uploads import Upload

log = logging.getLogger("deepfake.jobs")
TIMELINE_SHARE = 0.95  # of the progress: the rest is the /predict/ analysis at the end


def video_path(settings: Settings, job_id: str) -> Path:
    """Where a job's upload waits for it (a folder the front and the workers share in a cluster)."""
    return settings.jobs_dir / "videos" / job_id


def timeline_options(settings: Settings) -> TimelineOptions:
    return TimelineOptions(
        settings.timeline_fps, settings.timeline_max_samples, settings.timeline_window, settings.timeline_stride
    )


def job_view(record: JobRecord) -> dict[str, Any]:
    """What GET /jobs/{id} answers, and what a webhook carries."""
    return {
        "id": record.id,
        "state": record.state,
        "progress": round(record.progress, 4),
        "created_at": record.created_at.isoformat(),
        "started_at": record.started_at.isoformat() if record.started_at else None,
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
        "attempt": record.attempt,
        "filename": record.filename,
        "size": record.size,
        "sha256_hex": record.sha256,
        "timeline": record.timeline,
        "result": record.answer,
        "error": record.error,
        "webhook": record.webhook,
    }


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        analyzer: Analyzer,
        predictions: Predictions,
        store: JobStore,
        metrics: Metrics,
        webhook_key: bytes,
    ) -> None:
        self._settings, self._analyzer, self._predictions = settings, analyzer, predictions
        self._store, self._metrics, self._webhook_key = store, metrics, webhook_key
        self.running: set[str] = set()

    async def run(self, job_id: str) -> None:
        settings, store = self._settings, self._store
        attempt = await asyncio.to_thread(store.claim, job_id, settings.jobs_lease_s)
        if attempt is None:
            log.info("job %s is not queued any more (cancelled, or run elsewhere): skipped", job_id)
            return
        record = await asyncio.to_thread(store.get, job_id, None)
        assert record is not None
        self.running.add(job_id)
        started = time.monotonic()
        outcome = "failed"
        try:
            outcome = await self._attempt(record, attempt)
        finally:
            self.running.discard(job_id)
            self._metrics.job_seconds.labels(outcome).observe(time.monotonic() - started)
            self._metrics.jobs_finished.labels(outcome).inc()
        if outcome in ("done", "failed"):
            await self._notify(job_id, record.owner, record.options.get("webhook_url"))

    async def _attempt(self, record: JobRecord, attempt: int) -> str:
        """The outcome: done, failed, or stopped (cancelled / taken back: nothing more to do)."""
        settings, store, job_id = self._settings, self._store, record.id
        video = video_path(settings, job_id)

        async def report(timeline: Timeline) -> bool:
            progress = TIMELINE_SHARE * timeline.progress
            return await asyncio.to_thread(
                store.report, job_id, attempt, progress, timeline.to_json(), settings.jobs_lease_s
            )

        finished, state = False, "failed"
        try:
            if not video.is_file():
                raise ServiceError(f"the job's video is gone from {settings.jobs_dir} (was it shared?)")
            analyzer = TimelineAnalyzer(self._analyzer, timeline_options(settings), settings.jobs_max_video_s)
            timeline = await analyzer.analyze(video, report)
            upload = Upload(video, record.filename, record.size, record.sha256)
            caller = Caller(record.owner, operator=False, rate_key=f"job:{record.owner}")
            answer = await self._predictions.predict(caller, upload, bool(record.options.get("refresh")), _now)
            result = {**answer.model_dump(mode="json"), "timeline": timeline.to_json(), "job_id": job_id}
            finished = await asyncio.to_thread(store.finish, job_id, attempt, "done", result, None, timeline.to_json())
            state = "done"
        except Stopped:
            log.info("job %s stopped: cancelled, or taken back from this worker", job_id)
            return "stopped"
        except ServiceError as error:
            problem = {"code": error.code, "message": error.message}
            finished = await asyncio.to_thread(store.finish, job_id, attempt, "failed", None, problem)
        except Exception as error:  # the job's failure, never the worker's
            log.exception("job %s failed", job_id)
            problem = {"code": "internal_error", "message": error.__class__.__name__}
            finished = await asyncio.to_thread(store.finish, job_id, attempt, "failed", None, problem)
        if not finished:  # cancelled meanwhile, or taken back: the other run owns the outcome
            return "stopped"
        video.unlink(missing_ok=True)
        log.info("job %s %s (attempt %d)", job_id, state, attempt)
        return state

    async def _notify(self, job_id: str, owner: str, url: str | None) -> None:
        if not url:
            return
        settings = self._settings
        record = await asyncio.to_thread(self._store.get, job_id, None)
        if record is None:
            return
        policy = WebhookPolicy(
            allow_private=settings.webhook_allow_private,
            timeout_s=settings.webhook_timeout_s,
            max_attempts=settings.webhook_max_attempts,
        )
        secret = owner_secret(self._webhook_key, owner)
        result: DeliveryResult = await deliver(url, f"job.{record.state}", job_view(record), secret, policy)
        outcome: dict[str, Any] = {"delivered": result.delivered, "attempts": result.attempts}
        outcome.update(status=result.status, error=result.error)
        await asyncio.to_thread(self._store.record_webhook, job_id, outcome)


def _now(function: Callable[..., Any], *args: Any) -> None:
    """The images a /predict/ answer keeps are written at once here (no response to send first)."""
    function(*args)
