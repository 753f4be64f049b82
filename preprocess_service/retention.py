"""Retention: the history's size and age bounded, and its artifacts removed with it.

A purge erases analyses older than ``DEEPFAKE_HISTORY_RETENTION_DAYS`` and, per owner, all but the
newest ``DEEPFAKE_HISTORY_MAX_PER_OWNER``; the erased analyses' artifact folders go too. It runs at
start and then every ``DEEPFAKE_HISTORY_PURGE_INTERVAL_S`` in each replica: a purge is idempotent,
so replicas purging the same database at once only repeat each other's work.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from preprocess_service import artifacts
from preprocess_service.history.recorder import FAILURES, History
from preprocess_service.settings import Settings

log = logging.getLogger("deepfake.retention")


def purge_once(history: History, settings: Settings, now: datetime | None = None) -> int:
    """Erases what retention no longer keeps; the number of analyses erased."""
    if history.store is None:
        return 0
    max_age = timedelta(days=settings.history_retention_days) if settings.history_retention_days else None
    max_rows = settings.history_max_per_owner or None
    if max_age is None and max_rows is None:
        return 0
    erased = history.store.purge(now or datetime.now(UTC), max_age, max_rows)
    if erased and settings.artifacts:
        artifacts.remove(settings.artifacts_dir, erased)
    if erased:
        log.info("retention purge erased %d analyses", len(erased))
    return len(erased)


async def purge_forever(history: History, settings: Settings) -> None:
    while True:
        try:
            await asyncio.to_thread(purge_once, history, settings)
        except FAILURES as error:
            log.error("retention purge failed: %r", error)
            history.count_failure("purge")
        await asyncio.sleep(settings.history_purge_interval_s)
