"""Two tables: analyses (an analysis, its owner, its indexed summary, and the whole answer as it was
given) and jobs (asynchronous analyses, their state and results)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Dialect, Float, Index, Integer, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Times stored in UTC and read back with their offset, on every database.

    SQLite has no time zone type: SQLAlchemy writes the clock digits and drops the offset, so a
    filter ``since=10:00+02:00`` compared as 10:00 UTC. Every time is converted to UTC before it
    is written or compared (a time without an offset is taken as UTC), and read back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)


class Base(DeclarativeBase):
    pass


class AnalysisRecord(Base):
    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    owner: Mapped[str] = mapped_column(String(64))  # the API key id that made it (access.py), or "local"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    filename: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    model_key: Mapped[str] = mapped_column(String(64))  # the model and settings that made the answer
    checkpoint_sha256: Mapped[str] = mapped_column(String(128))
    precision: Mapped[str] = mapped_column(String(8))
    untrained_demo: Mapped[bool] = mapped_column(Boolean)
    rule: Mapped[str] = mapped_column(String(16))
    result: Mapped[str] = mapped_column(String(8), index=True)
    p_fake: Mapped[float] = mapped_column(Float)
    total_s: Mapped[float] = mapped_column(Float)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the request that made it (logs.py)
    # verdicts, every frame's score and box, stage timings, model block, metadata, receipt:
    # read only for one analysis (GET /analyses/{id}, its CSV, a cache hit), never by listings
    answer: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (
        Index("ix_analyses_created_at", "created_at"),
        Index("ix_analyses_owner_created", "owner", "created_at"),
        Index("ix_analyses_owner_sha256_model", "owner", "sha256", "model_key"),
    )


JOB_STATES = ("queued", "running", "done", "failed", "cancelled")
FINISHED_STATES = ("done", "failed", "cancelled")


class JobRecord(Base):
    """An asynchronous analysis (preprocess_service/jobs): owned like an analysis, its state the one
    truth about who runs it. ``attempt`` and ``lease_until`` make each run's writes conditional on
    still holding the job, so a worker that died, or one the job was taken back from, cannot finish
    it a second time."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    owner: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))  # JOB_STATES
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    enqueued_at: Mapped[datetime] = mapped_column(UTCDateTime())  # last time it was put on the queue
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    filename: Mapped[str] = mapped_column(String(512))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    options: Mapped[dict] = mapped_column(JSON)  # refresh, webhook_url, timeline options
    timeline: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # partial while running
    answer: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the /predict/ answer + timeline
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # {"code", "message"}
    webhook: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # the delivery's outcome

    __table_args__ = (
        Index("ix_jobs_owner_created", "owner", "created_at"),
        Index("ix_jobs_state_lease", "state", "lease_until"),
    )
