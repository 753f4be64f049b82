"""Reads and writes of the history, synchronous (the routes call them in a thread).

Every query takes an owner filter: an owner's key id, or None for every owner (the operator's view;
access.Caller.owner_filter decides which). Listings and statistics read summary columns only, never
the stored answers, so their cost does not grow with what an answer holds.
"""

from __future__ import annotations

import fcntl
import os
import statistics
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util import CommandError as AlembicError
from sqlalchemy import ColumnElement, Engine, create_engine, delete, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from preprocess_service.history.models import AnalysisRecord

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
HEAD_REVISION = "0004"
LATENCY_WINDOW = 10_000  # /stats percentiles over the most recent analyses
DELETE_CHUNK = 500  # ids per DELETE … WHERE id IN (…): within every database's parameter limit


@dataclass(frozen=True)
class Summary:
    """What a listing shows of one analysis: its indexed columns, never the answer."""

    id: str
    owner: str
    created_at: datetime
    filename: str
    size: int
    sha256: str
    checkpoint_sha256: str
    precision: str
    untrained_demo: bool
    rule: str
    result: str
    p_fake: float
    total_s: float
    request_id: str | None


SUMMARY_COLUMNS = tuple(getattr(AnalysisRecord, name) for name in Summary.__dataclass_fields__)


@dataclass(frozen=True)
class Page:
    items: list[Summary]
    total: int


class DatabaseFileGone(OSError):
    """The SQLite file was removed or replaced under the running service: writes would go to a
    deleted inode and be lost without an error, so they are refused (and /readyz says so)."""


# pg_advisory_lock key held while migrating (any constant; this one spells "deepfake" in ASCII).
MIGRATION_LOCK = 0x6465_6570_6661_6B65


# libpq's sslmodes, weakest first: the configured one is a floor a URL cannot lower.
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def engine_options(url: str, sslmode: str | None = None, sslrootcert: Path | str | None = None) -> dict[str, Any]:
    """``create_engine`` keywords that carry the configured TLS to a PostgreSQL server (libpq's
    ``sslmode`` and ``sslrootcert``, passed to psycopg as ``connect_args``, which win over the URL's
    query). The URL comes from a Secret someone else writes; DEEPFAKE_DATABASE_SSLMODE comes from the
    cluster's ConfigMap and states the floor: an ``sslmode=disable`` in the URL does not turn TLS off
    where verify-full is configured, while a stronger sslmode in the URL is kept. SQLite has no TLS:
    both settings are ignored there (as they are when unset)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return {}
    connect_args: dict[str, str] = {}
    if sslmode is not None:
        if sslmode not in SSLMODES:
            raise ValueError(f"DEEPFAKE_DATABASE_SSLMODE {sslmode!r} is none of {', '.join(SSLMODES)}")
        in_url = parsed.query.get("sslmode")  # a str, or a tuple where the query repeats it
        in_url = in_url[-1] if isinstance(in_url, tuple) else in_url
        stronger = SSLMODES[SSLMODES.index(sslmode) + 1 :]
        connect_args["sslmode"] = in_url if isinstance(in_url, str) and in_url in stronger else sslmode
    if sslrootcert is not None:
        connect_args["sslrootcert"] = str(sslrootcert)
    return {"connect_args": connect_args} if connect_args else {}


class SchemaBehind(RuntimeError):
    """The database is not at this release's revision and this process was told not to migrate it
    (a Kubernetes Job does, once): the history waits rather than write into an old schema."""


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    """An exclusive lock beside a SQLite file while it is migrated: pysqlite commits each DDL
    statement at once, so two processes (``deepfake-serve --workers N``) could both create the
    tables. Nothing to lock for other databases (PostgreSQL: the advisory lock) or in memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        yield
        return
    lock_path = Path(f"{parsed.database}.migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def migrate(url: str, sslmode: str | None = None, sslrootcert: Path | str | None = None) -> None:
    """Alembic's ``upgrade head``, once however many processes ask at the same moment.

    On PostgreSQL the upgrade runs on a connection that holds a session advisory lock: a second
    process (another replica, the migration Job) waits for the first, then finds the head revision
    and has nothing to do. A session lock needs a direct connection (or a session-pooling
    PgBouncer), not transaction pooling. On SQLite a file lock beside the database does the same.
    ``sslmode``/``sslrootcert``: PostgreSQL's TLS, as engine_options says."""
    config = _alembic_config(url)
    engine = create_engine(url, poolclass=NullPool, **engine_options(url, sslmode, sslrootcert))
    try:
        with _sqlite_file_lock(url), engine.connect() as connection:
            locked = connection.dialect.name == "postgresql"
            if locked:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK})
                connection.commit()
            try:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
            finally:
                if locked:
                    with suppress(SQLAlchemyError):  # a dead connection ends its session lock anyway
                        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
                        connection.commit()
    finally:
        engine.dispose()


def _known_revision(revision: str) -> bool:
    try:
        return ScriptDirectory.from_config(_alembic_config("sqlite://")).get_revision(revision) is not None
    except AlembicError:  # a revision none of this release's migrations names: a newer release's
        return False


def _owned(owner: str | None) -> list[ColumnElement[bool]]:
    return [] if owner is None else [AnalysisRecord.owner == owner]


class HistoryStore:
    def __init__(self, url: str, sslmode: str | None = None, sslrootcert: Path | str | None = None) -> None:
        """``sslmode``/``sslrootcert``: DEEPFAKE_DATABASE_SSLMODE/_SSLROOTCERT (engine_options)."""
        parsed = make_url(url)
        self._file: Path | None = None
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            self._file = Path(parsed.database)
            self._file.parent.mkdir(parents=True, exist_ok=True)
        self.url, self._tls = url, (sslmode, sslrootcert)
        self.engine: Engine = create_engine(url, pool_pre_ping=True, **engine_options(url, sslmode, sslrootcert))
        self._identity: tuple[int, int] | None = None

    def migrate(self) -> None:
        migrate(self.url, *self._tls)
        self._remember_file()

    def require_head(self) -> None:
        """Raises SchemaBehind unless the database is at this release's revision, or at one this
        release does not know (a newer release's: its migrations only add, so this one still reads
        and writes; a rollback or an old pod during a rollout keeps its history)."""
        with self.engine.connect() as connection:
            migrated = inspect(connection).has_table("alembic_version")
        revision = self.revision() if migrated else None
        known = revision is not None and _known_revision(revision)
        if revision != HEAD_REVISION and (revision is None or known):
            raise SchemaBehind(
                f"the history database is at revision {revision or 'none'}, this release needs {HEAD_REVISION}:"
                " run `deepfake-serve --migrate` (the Kubernetes migration Job does)"
            )
        self._remember_file()

    def _remember_file(self) -> None:
        if self._file is not None:
            stat = os.stat(self._file)
            self._identity = (stat.st_dev, stat.st_ino)

    def check_file(self) -> None:
        """Raises DatabaseFileGone when the SQLite file the service opened is no longer at its path."""
        if self._file is None or self._identity is None:
            return
        try:
            stat = os.stat(self._file)
        except FileNotFoundError:
            raise DatabaseFileGone(f"the history file {self._file} was removed under the running service") from None
        if (stat.st_dev, stat.st_ino) != self._identity:
            raise DatabaseFileGone(f"the history file {self._file} was replaced under the running service")

    def save(self, record: AnalysisRecord) -> bool:
        self.check_file()
        with Session(self.engine) as session, session.begin():
            session.add(record)
        return True

    def cached(self, owner: str, sha256: str, model_key: str) -> AnalysisRecord | None:
        """The owner's newest analysis of this file by this model: never another owner's."""
        query = (
            select(AnalysisRecord)
            .where(
                AnalysisRecord.owner == owner, AnalysisRecord.sha256 == sha256, AnalysisRecord.model_key == model_key
            )
            .order_by(AnalysisRecord.created_at.desc())
            .limit(1)
        )
        with Session(self.engine) as session:
            return session.scalars(query).first()

    def get(self, analysis_id: str, owner: str | None) -> AnalysisRecord | None:
        query = select(AnalysisRecord).where(AnalysisRecord.id == analysis_id, *_owned(owner))
        with Session(self.engine) as session:
            return session.scalars(query).first()

    def page(
        self,
        owner: str | None,
        page: int = 1,
        per_page: int = 20,
        result: str | None = None,
        sha256: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        checkpoint_sha256: str | None = None,
        precision: str | None = None,
    ) -> Page:
        conditions = _owned(owner)
        if checkpoint_sha256:  # a prefix: the 12 characters a table shows find the model
            conditions.append(AnalysisRecord.checkpoint_sha256.startswith(checkpoint_sha256, autoescape=True))
        if precision:
            conditions.append(AnalysisRecord.precision == precision)
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
            rows = session.execute(
                select(*SUMMARY_COLUMNS)
                .where(*conditions)
                .order_by(AnalysisRecord.created_at.desc(), AnalysisRecord.id)
                .offset((page - 1) * per_page)
                .limit(per_page)
            ).all()
        return Page([Summary(*row) for row in rows], total)

    def stats(self, owner: str | None) -> dict:
        owned = _owned(owner)
        with Session(self.engine) as session:
            total = session.scalar(select(func.count()).select_from(AnalysisRecord).where(*owned)) or 0
            split = dict(
                session.execute(
                    select(AnalysisRecord.result, func.count()).where(*owned).group_by(AnalysisRecord.result)
                ).all()
            )
            demo = session.scalar(select(func.count()).where(AnalysisRecord.untrained_demo.is_(True), *owned)) or 0
            latencies = session.scalars(
                select(AnalysisRecord.total_s)
                .where(*owned)
                .order_by(AnalysisRecord.created_at.desc())
                .limit(LATENCY_WINDOW)
            ).all()
        percentiles = {}
        if latencies:
            ordered = sorted(latencies)
            for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99)):
                percentiles[name] = ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
            percentiles["mean"] = statistics.fmean(ordered)
        return {"analyses": total, "by_result": split, "untrained_demo": demo, "latency_s": percentiles}

    def delete(self, owner: str | None, analysis_id: str | None = None, sha256: str | None = None) -> list[str]:
        """Erases one analysis, or every analysis of a file, within the owner's: the ids erased."""
        conditions = _owned(owner)
        if analysis_id is not None:
            conditions.append(AnalysisRecord.id == analysis_id)
        if sha256 is not None:
            conditions.append(AnalysisRecord.sha256 == sha256)
        if len(conditions) == len(_owned(owner)):
            raise ValueError("an erasure names an analysis or a file")
        with Session(self.engine) as session, session.begin():
            ids = list(session.scalars(select(AnalysisRecord.id).where(*conditions)))
            self._delete_ids(session, ids)
        return ids

    def purge(self, now: datetime, max_age: timedelta | None, max_per_owner: int | None) -> list[str]:
        """Retention: erases analyses older than ``max_age`` and, per owner, all but the newest
        ``max_per_owner``. Returns the ids erased (their artifacts go too)."""
        with Session(self.engine) as session, session.begin():
            ids: list[str] = []
            if max_age is not None:
                ids += session.scalars(select(AnalysisRecord.id).where(AnalysisRecord.created_at < now - max_age))
            if max_per_owner is not None:
                ranked = select(
                    AnalysisRecord.id,
                    func.row_number()
                    .over(
                        partition_by=AnalysisRecord.owner,
                        order_by=(AnalysisRecord.created_at.desc(), AnalysisRecord.id),
                    )
                    .label("rank"),
                ).subquery()
                ids += session.scalars(select(ranked.c.id).where(ranked.c.rank > max_per_owner))
            unique = list(dict.fromkeys(ids))
            self._delete_ids(session, unique)
        return unique

    @staticmethod
    def _delete_ids(session: Session, ids: Iterable[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), DELETE_CHUNK):
            session.execute(delete(AnalysisRecord).where(AnalysisRecord.id.in_(ids[start : start + DELETE_CHUNK])))

    def revision(self) -> str | None:
        """The database's Alembic revision (raises where it was never migrated)."""
        with self.engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def close(self) -> None:
        self.engine.dispose()
