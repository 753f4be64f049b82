"""One table: an analysis, its indexed facts, and the whole answer as it was given."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, Float, Index, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AnalysisRecord(Base):
    __tablename__ = "analyses"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
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
    # verdicts, every frame's score and box, stage timings, model block, metadata, receipt
    answer: Mapped[dict] = mapped_column(JSON)

    __table_args__ = (Index("ix_analyses_sha256_model", "sha256", "model_key"),)
