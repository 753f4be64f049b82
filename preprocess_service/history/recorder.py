"""What the routes use: the cache lookup and the record of each answer, both failure-proof.

A database that is down, locked or full must never cost a caller the answer: every failure here is
logged and counted (``deepfake_history_errors``), and the analysis goes on as if there were no
history; the last write failure shows in ``/readyz`` until a write succeeds again. A cached answer
is given only to the owner who made it, for the same file (SHA-256) and the same model and
settings (``model_key``): one owner's cache never tells another that a file was uploaded. A model
without a known identity (no checkpoint hash) is never cached; a caller without an owner (no key
where keys are configured) is neither stored nor answered from the history.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from model_contract.identity import ModelInfo
from preprocess_service.errors import HistoryUnavailable
from preprocess_service.history.models import AnalysisRecord
from preprocess_service.history.store import HistoryStore, SchemaBehind
from preprocess_service.logs import current_request_id
from preprocess_service.metrics import Metrics
from preprocess_service.pipeline import Analysis
from preprocess_service.settings import Settings
from preprocess_service.uploads import Upload

log = logging.getLogger("deepfake.history")
T = TypeVar("T")
FAILURES = (SQLAlchemyError, OSError)
REOPEN_INTERVAL_S = 5.0
KNOWN_IDENTITY = re.compile(r"^[0-9a-f]{64}$|^none \(untrained demo, seed \d+\)$")


def model_key(model: ModelInfo, settings: Settings) -> str | None:
    """Everything that changes an answer for the same file; None when the model cannot be identified."""
    if not KNOWN_IDENTITY.match(model.checkpoint_sha256):
        return None
    identity = {
        "checkpoint": model.checkpoint_sha256,
        "family": model.family,
        "architecture": model.architecture,
        "preprocessing": model.preprocessing.describe(),
        "precision": model.precision,
        "plan": model.plan,  # a mixed int8 plan answers differently from the whole-int8 one
        "runtime": model.runtime,
        "thresholds": model.thresholds,
        "max_time": model.max_time,
        "settings": [
            settings.num_frames,
            settings.verdict,
            settings.face_min_confidence,
            settings.face_margin,
            settings.face_haar_max_side,
            settings.display_frames,
        ],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


class History:
    def __init__(
        self,
        store: HistoryStore | None,
        metrics: Metrics,
        cache: bool = True,
        opener: Callable[[], HistoryStore] | None = None,
        open_error: str | None = None,
    ) -> None:
        self.store, self._metrics, self._cache = store, metrics, cache
        self.write_failure: str | None = None  # the last failed save, until one succeeds
        # A configured history that could not open (database down, schema not yet migrated): tried
        # again every REOPEN_INTERVAL_S by watch_forever, so a pod picks it up once it is there.
        self._opener, self.open_error = opener, open_error
        self._reopening, self._closed = False, False
        self._reopen_lock = threading.Lock()  # the attempt's thread and close() meet here

    def reopen_soon(self) -> None:
        """Starts one attempt in a thread of its own (none while one runs): an unreachable database
        may take its whole connect timeout, and the event loop must not wait for it."""
        with self._reopen_lock:
            opener = self._opener
            if opener is None or self._reopening or self._closed:
                return
            self._reopening = True

        def attempt() -> None:
            store: HistoryStore | None = None
            try:
                store = opener()
            except Exception as error:  # anything: logged, said in /readyz, tried again later
                self.open_error = _open_failure(error)
                log.warning("history still unavailable: %s", self.open_error)
            with self._reopen_lock:
                self._reopening = False
                if store is None:
                    return
                if self._closed:  # the application ended while this attempt ran
                    store.close()
                    return
                self.store, self.open_error, self._opener = store, None, None
            log.info("history database available")

        threading.Thread(target=attempt, name="history-reopen", daemon=True).start()

    def waiting(self) -> bool:
        """A configured history not open yet (the watch chore keeps trying while this holds)."""
        return self.store is None and self._opener is not None

    def health(self) -> dict:
        """What /readyz says of the history: off, ok, or degraded (answers given but not stored: a
        failed write, a database that could not be opened, or a schema not yet migrated)."""
        if self.store is None:
            return {"status": "degraded", "error": self.open_error} if self.open_error else {"status": "off"}
        failure = self.write_failure
        if failure is None:
            try:
                self.store.check_file()
            except OSError as error:
                failure = str(error)
        return {"status": "degraded", "error": failure} if failure else {"status": "ok"}

    async def _safely(self, operation: str, call: Callable[[], T]) -> T | None:
        if self.store is None:
            return None
        try:
            return await asyncio.to_thread(call)
        except FAILURES as error:
            log.error("history %s failed: %r", operation, error)
            self._metrics.history_errors.labels(operation).inc()
            return None

    async def cached_answer(self, owner: str | None, sha256: str, key: str | None) -> dict | None:
        if not self._cache or key is None or owner is None or self.store is None:
            return None
        store = self.store
        record = await self._safely("lookup", lambda: store.cached(owner, sha256, key))
        if record is None:
            return None
        self._metrics.cache_hits.inc()
        return {**record.answer, "history_id": record.id}

    async def record(
        self,
        analysis_id: str,
        owner: str | None,
        key: str | None,
        analysis: Analysis,
        upload: Upload,
        answer: BaseModel,
    ) -> bool:
        """Stores the analysis under its owner (its summary from the domain objects, the answer whole
        beside it); False when there is no owner, or (logged, counted) when the database failed."""
        if self.store is None or owner is None:
            return False
        verdict, model = analysis.verdict, analysis.model
        record = AnalysisRecord(
            id=analysis_id,
            owner=owner,
            created_at=datetime.now(UTC),
            filename=upload.filename[:512],
            size=upload.size,
            sha256=upload.sha256,
            model_key=key or "",
            checkpoint_sha256=model.checkpoint_sha256[:128],
            precision=model.precision,
            untrained_demo=model.untrained_demo,
            rule=analysis.rule,
            result=verdict.label,
            p_fake=round(verdict.p_fake, 6),  # as the answer gives it
            total_s=round(analysis.timings["total"], 3),
            request_id=current_request_id.get(),
            answer=answer.model_dump(mode="json"),
        )
        store = self.store
        try:
            saved = await asyncio.to_thread(store.save, record)
        except FAILURES as error:
            log.error("history save failed: %r", error)
            self._metrics.history_errors.labels("save").inc()
            self.write_failure = f"the last analysis could not be stored: {error}"[:300]
            return False
        self.write_failure = None
        return saved

    def close(self) -> None:
        with self._reopen_lock:
            self._closed = True
        if self.store is not None:
            self.store.close()

    def count_failure(self, operation: str) -> None:
        self._metrics.history_errors.labels(operation).inc()

    def require(self) -> HistoryStore:
        if self.store is None:
            raise HistoryUnavailable("the history database is not available")
        return self.store


async def watch_forever(history: History) -> None:
    """Keeps trying a configured history that could not open until it opens; each attempt runs in a
    thread of its own (History.reopen_soon)."""
    while history.waiting():
        await asyncio.sleep(REOPEN_INTERVAL_S)
        history.reopen_soon()


def _open_failure(error: BaseException) -> str:
    if isinstance(error, SchemaBehind):
        return str(error)
    return f"the history database cannot be opened: {type(error).__name__}"  # no URL, no password


def open_history(settings: Settings, metrics: Metrics) -> History:
    """Migrated (or, where a Job migrates, checked to be at this release's revision) and ready; else a
    History without a store that says why in /readyz (degraded) until watch_forever opens it."""
    if not settings.history:
        return History(None, metrics, cache=False)

    def opened() -> HistoryStore:
        store = HistoryStore(settings.database_url, settings.database_sslmode, settings.database_sslrootcert)
        try:
            store.migrate() if settings.migrate_on_start else store.require_head()
        except BaseException:
            store.close()
            raise
        return store

    try:
        return History(opened(), metrics, cache=settings.history_cache)
    except (*FAILURES, SchemaBehind) as error:
        log.error("history unavailable, serving without it until it is: %r", error)
        metrics.history_errors.labels("open").inc()
        return History(None, metrics, cache=settings.history_cache, opener=opened, open_error=_open_failure(error))
