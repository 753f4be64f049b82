"""The jobs table's operations, each one statement or one short transaction.

Who runs a job is decided here, not by the queue: a worker *claims* a queued job (queued → running,
``attempt`` + 1, a lease), renews the lease with each progress report, and finishes it only while
it still holds that attempt. The queue may deliver a message twice, or lose one with a dead worker;
``requeue_expired`` takes back jobs whose lease ran out (queued again while attempts remain, else
failed), so a job is never lost and never finished twice.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, delete, func, select, update
from sqlalchemy.orm import Session

from preprocess_service.history.models import FINISHED_STATES, JobRecord


def now() -> datetime:
    return datetime.now(UTC)


def _changed(result: Any) -> int:
    """Rows an UPDATE changed (an UPDATE's result is a CursorResult; Session.execute is typed wider)."""
    return cast(CursorResult, result).rowcount


def new_job_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class JobPage:
    items: list[JobRecord]
    total: int


class JobStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, record: JobRecord) -> None:
        with Session(self.engine, expire_on_commit=False) as session, session.begin():
            session.add(record)

    def get(self, job_id: str, owner: str | None) -> JobRecord | None:
        """``owner`` None: any owner's (the operator, and the workers)."""
        query = select(JobRecord).where(JobRecord.id == job_id)
        if owner is not None:
            query = query.where(JobRecord.owner == owner)
        with Session(self.engine) as session:
            return session.scalars(query).first()

    def page(self, owner: str | None, page: int, per_page: int, state: str | None = None) -> JobPage:
        conditions = [] if owner is None else [JobRecord.owner == owner]
        if state is not None:
            conditions.append(JobRecord.state == state)
        with Session(self.engine) as session:
            total = session.scalar(select(func.count()).select_from(JobRecord).where(*conditions)) or 0
            items = session.scalars(
                select(JobRecord)
                .where(*conditions)
                .order_by(JobRecord.created_at.desc(), JobRecord.id)
                .offset((page - 1) * per_page)
                .limit(per_page)
            ).all()
        return JobPage(list(items), total)

    def unfinished_count(self, owner: str) -> int:
        with Session(self.engine) as session:
            return (
                session.scalar(
                    select(func.count())
                    .select_from(JobRecord)
                    .where(JobRecord.owner == owner, JobRecord.state.in_(("queued", "running")))
                )
                or 0
            )

    def counts(self) -> dict[str, int]:
        """Jobs by state, every owner's: the queue depth /metrics reports."""
        with Session(self.engine) as session:
            rows = session.execute(select(JobRecord.state, func.count()).group_by(JobRecord.state)).all()
        return {state: count for state, count in rows}

    def claim(self, job_id: str, lease_s: float) -> int | None:
        """queued → running for one more attempt; the attempt number, or None (not queued any more:
        cancelled, or another worker has it)."""
        moment = now()
        with Session(self.engine) as session, session.begin():
            claimed = _changed(
                session.execute(
                    update(JobRecord)
                    .where(JobRecord.id == job_id, JobRecord.state == "queued")
                    .values(
                        state="running",
                        attempt=JobRecord.attempt + 1,
                        started_at=moment,
                        lease_until=moment + timedelta(seconds=lease_s),
                    )
                )
            )
            if not claimed:
                return None
            return session.scalar(select(JobRecord.attempt).where(JobRecord.id == job_id))

    def _held(self, job_id: str, attempt: int) -> list:
        return [JobRecord.id == job_id, JobRecord.attempt == attempt, JobRecord.state == "running"]

    def report(self, job_id: str, attempt: int, progress: float, timeline: dict[str, Any], lease_s: float) -> bool:
        """Progress (never backwards) and the partial timeline; renews the lease. False: the job is
        no longer this attempt's (cancelled, or taken back after a lapse)."""
        with Session(self.engine) as session, session.begin():
            return bool(
                _changed(
                    session.execute(
                        update(JobRecord)
                        .where(*self._held(job_id, attempt))
                        .values(
                            progress=func.max(JobRecord.progress, progress)
                            if self.engine.dialect.name == "sqlite"
                            else func.greatest(JobRecord.progress, progress),
                            timeline=timeline,
                            lease_until=now() + timedelta(seconds=lease_s),
                        )
                    )
                )
            )

    def finish(
        self,
        job_id: str,
        attempt: int,
        state: str,
        answer: dict | None = None,
        error: dict | None = None,
        timeline: dict | None = None,
    ) -> bool:
        """running → done or failed, only by the attempt that holds it: True for exactly one run."""
        values: dict[str, Any] = {"state": state, "finished_at": now(), "lease_until": None, "answer": answer}
        values["error"] = error
        if state == "done":
            values["progress"] = 1.0
        if timeline is not None:
            values["timeline"] = timeline
        with Session(self.engine) as session, session.begin():
            finished = session.execute(update(JobRecord).where(*self._held(job_id, attempt)).values(**values))
            return bool(_changed(finished))

    def record_webhook(self, job_id: str, outcome: dict) -> None:
        with Session(self.engine) as session, session.begin():
            session.execute(update(JobRecord).where(JobRecord.id == job_id).values(webhook=outcome))

    def cancel(self, job_id: str, owner: str | None) -> str | None:
        """queued or running → cancelled; the state after (None: no such job of this owner's)."""
        conditions = [JobRecord.id == job_id] + ([] if owner is None else [JobRecord.owner == owner])
        with Session(self.engine) as session, session.begin():
            session.execute(
                update(JobRecord)
                .where(*conditions, JobRecord.state.in_(("queued", "running")))
                .values(state="cancelled", finished_at=now(), lease_until=None)
            )
            return session.scalar(select(JobRecord.state).where(*conditions))

    def erase(self, job_id: str, owner: str | None) -> bool:
        """A finished job's row, answer and all (its video is gone already)."""
        conditions = [JobRecord.id == job_id] + ([] if owner is None else [JobRecord.owner == owner])
        with Session(self.engine) as session, session.begin():
            record = session.scalars(select(JobRecord).where(*conditions, JobRecord.state.in_(FINISHED_STATES))).first()
            if record is None:
                return False
            session.delete(record)
            return True

    def requeue_expired(self, max_attempts: int) -> tuple[list[str], list[str]]:
        """Running jobs whose lease ran out (their worker died or hangs): queued again while attempts
        remain, else failed. Returns (requeued ids, failed ids); the caller puts the first on the queue."""
        moment = now()
        lapsed = [JobRecord.state == "running", JobRecord.lease_until < moment]
        with Session(self.engine) as session, session.begin():
            ids = session.scalars(select(JobRecord.id).where(*lapsed, JobRecord.attempt < max_attempts)).all()
            if ids:
                session.execute(
                    update(JobRecord)
                    .where(JobRecord.id.in_(ids), *lapsed)
                    .values(state="queued", lease_until=None, enqueued_at=moment)
                )
            failed = session.scalars(select(JobRecord.id).where(*lapsed, JobRecord.attempt >= max_attempts)).all()
            if failed:
                error = {"code": "worker_lost", "message": f"the worker running it stopped, {max_attempts} times"}
                session.execute(
                    update(JobRecord)
                    .where(JobRecord.id.in_(failed), *lapsed)
                    .values(state="failed", lease_until=None, finished_at=moment, error=error)
                )
        return list(ids), list(failed)

    def stale_queued(self, older_than_s: float) -> list[str]:
        """Queued jobs not picked up for a long time (their message lost with a broker restart):
        put on the queue again (a second message is harmless: only one run can claim)."""
        cutoff = now() - timedelta(seconds=older_than_s)
        with Session(self.engine) as session, session.begin():
            ids = session.scalars(
                select(JobRecord.id).where(JobRecord.state == "queued", JobRecord.enqueued_at < cutoff)
            ).all()
            if ids:
                session.execute(update(JobRecord).where(JobRecord.id.in_(ids)).values(enqueued_at=now()))
        return list(ids)

    def expired_finished(self, older_than: timedelta, limit: int = 500) -> list[str]:
        cutoff = now() - older_than
        with Session(self.engine) as session, session.begin():
            ids = session.scalars(
                select(JobRecord.id)
                .where(JobRecord.state.in_(FINISHED_STATES), JobRecord.finished_at < cutoff)
                .limit(limit)
            ).all()
            for job_id in ids:
                session.execute(delete(JobRecord).where(JobRecord.id == job_id))
        return list(ids)
