"""The history: past analyses (paged, filtered), one in full or as CSV, and statistics."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from preprocess_service import presenter
from preprocess_service.dependencies import Authorised, ServicesDep
from preprocess_service.errors import NotFound
from preprocess_service.history.models import AnalysisRecord
from preprocess_service.schemas import AnalysisPage, AnalysisSummary, ErrorResponse, StatsResponse, StoredAnalysis

router = APIRouter(tags=["history"], dependencies=[Authorised])


def _summary(record: AnalysisRecord) -> AnalysisSummary:
    return AnalysisSummary(
        id=record.id,
        created_at=record.created_at.isoformat(),
        filename=record.filename,
        size=record.size,
        sha256_hex=record.sha256,
        result=record.result,
        p_fake=record.p_fake,
        rule=record.rule,
        precision=record.precision,
        untrained_demo=record.untrained_demo,
        processing_time_sec=record.total_s,
    )


@router.get("/analyses", response_model=AnalysisPage)
async def list_analyses(
    services: ServicesDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 20,
    verdict: Literal["FAKE", "REAL"] | None = None,
    sha256: Annotated[str | None, Query(pattern="^[0-9a-f]{64}$")] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AnalysisPage:
    """Newest first; ``verdict``, ``sha256`` and a time range (ISO 8601, ``since`` ≤ t < ``until``) filter."""
    store = services.history.require()
    found = await asyncio.to_thread(store.page, page, per_page, verdict, sha256, since, until)
    return AnalysisPage(items=[_summary(r) for r in found.items], total=found.total, page=page, per_page=per_page)


async def _record(services: ServicesDep, analysis_id: str) -> AnalysisRecord:
    record = await asyncio.to_thread(services.history.require().get, analysis_id)
    if record is None:
        raise NotFound(f"no analysis {analysis_id!r} in the history")
    return record


@router.get(
    "/analyses/{analysis_id}.csv",
    responses={200: {"content": {"text/csv": {}}}, 404: {"model": ErrorResponse, "description": "no such analysis"}},
)
async def analysis_csv(analysis_id: str, services: ServicesDep) -> Response:
    """The analysis's per-frame scores, as /predict_csv/ gave them."""
    record = await _record(services, analysis_id)
    return Response(
        presenter.csv_from_answer(record.answer),
        media_type="text/csv",
        headers={"Content-Disposition": presenter.csv_content_disposition(record.filename)},
    )


@router.get(
    "/analyses/{analysis_id}",
    response_model=StoredAnalysis,
    responses={404: {"model": ErrorResponse, "description": "no such analysis"}},
)
async def get_analysis(analysis_id: str, services: ServicesDep) -> StoredAnalysis:
    """The whole answer as it was given, with when it was made."""
    record = await _record(services, analysis_id)
    return StoredAnalysis(id=record.id, created_at=record.created_at.isoformat(), answer=record.answer)


@router.get("/stats", response_model=StatsResponse)
async def stats(services: ServicesDep) -> StatsResponse:
    """Counts, the verdict split and latency percentiles (the latest 10 000 analyses)."""
    return StatsResponse(**await asyncio.to_thread(services.history.require().stats))
