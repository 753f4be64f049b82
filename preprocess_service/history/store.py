"""Reads and writes of the history, synchronous (the routes call them in a thread)."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session

from preprocess_service.history.models import AnalysisRecord

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
LATENCY_WINDOW = 10_000  # /stats percentiles over the most recent analyses


@dataclass(frozen=True)
class Page:
    items: list[AnalysisRecord]
    total: int


def migrate(url: str) -> None:
    """Alembic's ``upgrade head``: the schema every release of the service expects."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, "head")


class HistoryStore:
    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: Engine = create_engine(url, pool_pre_ping=True)

    def migrate(self) -> None:
        migrate(self.url)

    def save(self, record: AnalysisRecord) -> bool:
        with Session(self.engine) as session, session.begin():
            session.add(record)
        return True

    def cached(self, sha256: str, model_key: str) -> AnalysisRecord | None:
        query = (
            select(AnalysisRecord)
            .where(AnalysisRecord.sha256 == sha256, AnalysisRecord.model_key == model_key)
            .order_by(AnalysisRecord.created_at.desc())
            .limit(1)
        )
        with Session(self.engine) as session:
            return session.scalars(query).first()

    def get(self, analysis_id: str) -> AnalysisRecord | None:
        with Session(self.engine) as session:
            return session.get(AnalysisRecord, analysis_id)

    def page(
        self,
        page: int = 1,
        per_page: int = 20,
        result: str | None = None,
        sha256: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Page:
        conditions = []
        if result:
            conditions.append(AnalysisRecord.result == result)
        if sha256:
            conditions.append(AnalysisRecord.sha256 == sha256)
        if since:
            conditions.append(AnalysisRecord.created_at >= since)
        if until:
            conditions.append(AnalysisRecord.created_at < until)
        with Session(self.engine) as session:
            total = session.scalar(select(func.count()).select_from(AnalysisRecord).where(*conditions)) or 0
            items = session.scalars(
                select(AnalysisRecord)
                .where(*conditions)
                .order_by(AnalysisRecord.created_at.desc(), AnalysisRecord.id)
                .offset((page - 1) * per_page)
                .limit(per_page)
            ).all()
        return Page(list(items), total)

    def stats(self) -> dict:
        with Session(self.engine) as session:
            total = session.scalar(select(func.count()).select_from(AnalysisRecord)) or 0
            split = dict(
                session.execute(select(AnalysisRecord.result, func.count()).group_by(AnalysisRecord.result)).all()
            )
            demo = session.scalar(select(func.count()).where(AnalysisRecord.untrained_demo.is_(True))) or 0
            latencies = session.scalars(
                select(AnalysisRecord.total_s).order_by(AnalysisRecord.created_at.desc()).limit(LATENCY_WINDOW)
            ).all()
        percentiles = {}
        if latencies:
            ordered = sorted(latencies)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
                percentiles[name] = ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
            percentiles["mean"] = statistics.fmean(ordered)
        return {"analyses": total, "by_result": split, "untrained_demo": demo, "latency_s": percentiles}

    def close(self) -> None:
        self.engine.dispose()
