"""The jobs as the front and the workers see them: submit, read, list, cancel or erase, and the
chores that keep the queue honest (lapsed leases taken back, lost messages re-sent, old jobs erased).

Built beside the other ``Services`` on the history's database (the jobs table is one of its tables,
migrated with it). The embedded worker (``DEEPFAKE_JOBS_WORKER=embedded``, the default) takes
messages in this process and runs them on the service's own analyzer; ``external`` leaves that to
``deepfake-worker`` processes, which build this same object (jobs/worker.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import shutil
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine

from preprocess_service.access import Caller
from preprocess_service.errors import NotFound, RateLimited, ServiceError
from preprocess_service.history.models import JobRecord
from preprocess_service.jobs.queue import JobQueue, make_huey
from preprocess_service.jobs.runner import JobRunner, job_view, timeline_options, video_path
from preprocess_service.jobs.store import JobStore, new_job_id, now
from preprocess_service.jobs.timeline import read_job_clock
from preprocess_service.jobs.webhooks import load_webhook_key, owner_secret
from preprocess_service.metrics import Metrics
from preprocess_service.pipeline import Analyzer
from preprocess_service.predictions import Predictions
from preprocess_service.settings import Settings
from preprocess_service.uploads import Upload

log = logging.getLogger("deepfake.jobs")
IDLE_POLL_S = 0.5  # the embedded worker's wait when the queue is empty (Huey's consumer polls too)


def webhook_key(settings: Settings) -> bytes:
    """What every owner's webhook secret derives from, the same in every process. With a mounted signing
    key (a cluster: the front and the workers both have it, and a read-only root), derived from it, so no
    other Secret is needed and rotating the signing key rotates the webhook secrets; else a key file made
    once in ``keys_dir`` (a laptop)."""
    if settings.signing_key is not None:
        return hashlib.sha256(b"deepfake-webhook-key\0" + settings.signing_key.read_bytes()).digest()
    return load_webhook_key(settings.keys_dir)


class JobsUnavailable(ServiceError):
    status_code, code = 503, "jobs_unavailable"


class Jobs:
    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        queue: JobQueue,
        runner: JobRunner,
        metrics: Metrics,
        webhook_key: bytes,
    ) -> None:
        self.settings, self.store, self.queue, self.runner = settings, store, queue, runner
        self._metrics, self._webhook_key = metrics, webhook_key

    @classmethod
    def build(
        cls, settings: Settings, engine: Engine, analyzer: Analyzer, predictions: Predictions, metrics: Metrics
    ) -> Jobs:
        store = JobStore(engine)
        queue = JobQueue(make_huey(settings.jobs_broker_url, settings.jobs_dir))
        key = webhook_key(settings)
        runner = JobRunner(settings, analyzer, predictions, store, metrics, key)
        return cls(settings, store, queue, runner, metrics, key)

    def webhook_secret(self, owner: str) -> str:
        return owner_secret(self._webhook_key, owner)

    async def submit(self, caller: Caller, upload: Upload, options: dict[str, Any]) -> JobRecord:
        """Checked (a video a worker can read), recorded, its video moved where the workers find it,
        then queued. A message that cannot be sent now (broker down) is sent by the chore later: the
        job is never lost once answered 202."""
        owner = caller.owner
        assert owner is not None
        settings = self.settings
        unfinished = await asyncio.to_thread(self.store.unfinished_count, owner)
        if unfinished >= settings.jobs_max_unfinished_per_owner:
            raise RateLimited(
                f"{unfinished} of this caller's jobs are queued or running; at most "
                f"{settings.jobs_max_unfinished_per_owner} (wait for some, or cancel)",
                headers={"Retry-After": "30"},
            )
        # Demuxed (not decoded) now: a file no worker could analyze is refused with /predict/'s 4xx at
        # once, not accepted and failed later. Faces are the worker's to find.
        await asyncio.to_thread(read_job_clock, settings, upload.path, settings.jobs_max_video_s)
        job_id = new_job_id()
        destination = video_path(settings, job_id)
        destination.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.move, upload.path, destination)
        moment = now()
        record = JobRecord(
            id=job_id,
            owner=owner,
            state="queued",
            created_at=moment,
            enqueued_at=moment,
            attempt=0,
            progress=0.0,
            filename=upload.filename,
            size=upload.size,
            sha256=upload.sha256,
            options={**options, "timeline": timeline_options(settings).describe()},
        )
        try:
            await asyncio.to_thread(self.store.create, record)
        except BaseException:
            destination.unlink(missing_ok=True)
            raise
        try:
            await asyncio.to_thread(self.queue.enqueue, job_id)
        except Exception as error:  # the chore re-sends queued jobs that nobody picked up
            log.warning("job %s recorded but not queued yet (%s): the chore will", job_id, error.__class__.__name__)
        return record

    async def view(self, caller: Caller, job_id: str) -> dict[str, Any]:
        record = await asyncio.to_thread(self.store.get, job_id, caller.owner_filter)
        if record is None:
            raise NotFound("no such job of this caller's")
        return job_view(record)

    async def delete(self, caller: Caller, job_id: str) -> dict[str, Any]:
        """Queued or running: cancelled (a worker stops at its next report), its video deleted.
        Finished (done, failed, cancelled): erased, answer and all."""
        record = await asyncio.to_thread(self.store.get, job_id, caller.owner_filter)
        if record is None:
            raise NotFound("no such job of this caller's")
        if record.state in ("queued", "running"):
            state = await asyncio.to_thread(self.store.cancel, job_id, caller.owner_filter)
            video_path(self.settings, job_id).unlink(missing_ok=True)
            return {"id": job_id, "state": state, "erased": False}
        erased = await asyncio.to_thread(self.store.erase, job_id, caller.owner_filter)
        video_path(self.settings, job_id).unlink(missing_ok=True)
        return {"id": job_id, "state": record.state, "erased": erased}

    def refresh_metrics(self) -> None:
        counts = self.store.counts()
        for state in ("queued", "running", "done", "failed", "cancelled"):
            self._metrics.jobs.labels(state).set(counts.get(state, 0))
        try:
            self._metrics.queue_depth.set(self.queue.depth())
        except Exception as error:  # the broker down: the gauge keeps its last value
            log.warning("jobs' queue depth unreadable: %s", error.__class__.__name__)

    def tidy(self) -> None:
        """One round of the chore: lapsed leases, lost messages, finished jobs past retention."""
        settings = self.settings
        requeued, failed = self.store.requeue_expired(settings.jobs_max_attempts)
        for job_id in failed:
            video_path(settings, job_id).unlink(missing_ok=True)
        for job_id in requeued + self.store.stale_queued(settings.jobs_requeue_after_s):
            self.queue.enqueue(job_id)
        if requeued or failed:
            log.warning("jobs taken back from silent workers: %d queued again, %d failed", len(requeued), len(failed))
        for job_id in self.store.expired_finished(timedelta(days=settings.jobs_retention_days)):
            video_path(settings, job_id).unlink(missing_ok=True)
        self.refresh_metrics()

    async def tidy_forever(self) -> None:
        interval = max(1.0, min(self.settings.jobs_lease_s / 4, 30.0))
        while True:
            try:
                await asyncio.to_thread(self.tidy)
            except Exception as error:
                log.warning("jobs chore failed: %s", error)
            await asyncio.sleep(interval)

    async def work_forever(self) -> None:
        """The embedded worker: Huey's dequeue and execute, here, one message at a time per task; the
        job itself runs on this event loop (the service's analyzer and backend)."""
        loop = asyncio.get_running_loop()
        self.queue.bind(lambda job_id: asyncio.run_coroutine_threadsafe(self.runner.run(job_id), loop).result())
        while True:
            try:
                ran = await asyncio.to_thread(self.queue.run_one)
            except Exception as error:
                log.warning("embedded jobs worker: %s", error)
                ran = False
            if not ran:
                await asyncio.sleep(IDLE_POLL_S)
