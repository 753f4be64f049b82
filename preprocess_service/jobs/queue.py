"""The task queue: Huey (a maintained queue library: workers, retries, a consumer with graceful
shutdown) on the broker the settings name.

- ``DEEPFAKE_JOBS_BROKER_URL`` empty (a laptop): Huey's SQLite storage, a file in ``jobs_dir``; the
  service runs the jobs itself (``DEEPFAKE_JOBS_WORKER=embedded``), so the quick start needs no server.
- ``redis://…`` (a cluster, from a Secret): Huey's Redis storage, a list named ``huey.redis.deepfakejobs``
  that KEDA scales the ``deepfake-worker`` Deployment on.

A message carries only a job id. Huey has no acknowledgements (a message popped by a worker that then
dies is gone), so the jobs table, not the queue, decides who runs what (jobs/store.py): a job is
claimed before it runs, and a lapsed lease puts it back on the queue (docs/jobs.md, "Why Huey").
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from huey import Huey, RedisHuey, SqliteHuey

QUEUE_NAME = "deepfakejobs"  # Redis keys: huey.redis.deepfakejobs (the queue KEDA reads), huey.schedule…
REDIS_QUEUE_KEY = f"huey.redis.{QUEUE_NAME}"
TASK_NAME = "run_job"


def make_huey(broker_url: str, jobs_dir: Path) -> Huey:
    """Results are not stored in the broker (the jobs table holds them); Redis reads block for a
    second at most, so a stopping worker notices at once."""
    if broker_url.startswith(("redis://", "rediss://", "unix://")):
        return RedisHuey(QUEUE_NAME, url=broker_url, results=False, read_timeout=1)
    if broker_url:
        raise ValueError("DEEPFAKE_JOBS_BROKER_URL must be a redis:// URL, or empty for a SQLite queue file")
    jobs_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(QUEUE_NAME, filename=str(jobs_dir / "queue.sqlite3"), results=False)


class JobQueue:
    """One Huey and its one task, ``run_job(job_id)``: what runs it is bound by the process that
    consumes (a worker, or the service when embedded); a process that only enqueues binds nothing."""

    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self._runner: Callable[[str], None] | None = None

        def run_job(job_id: str) -> None:
            if self._runner is None:
                raise RuntimeError("this process enqueues jobs but does not run them")
            self._runner(job_id)

        self._task = huey.task(name=TASK_NAME, retries=0)(run_job)

    def bind(self, runner: Callable[[str], None]) -> None:
        self._runner = runner

    def enqueue(self, job_id: str) -> None:
        self._task(job_id)

    def depth(self) -> int:
        """Messages waiting in the broker (what KEDA scales on, for Redis)."""
        return int(self.huey.pending_count())

    def run_one(self) -> bool:
        """Takes one message and runs it here (the embedded worker): False when the queue was empty."""
        task = self.huey.dequeue()
        if task is None:
            return False
        self.huey.execute(task)
        return True
