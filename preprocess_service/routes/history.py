"""The history: the caller's own past analyses (paged, filtered), one in full or as CSV, statistics,
and erasure. An operator key sees and erases every owner's (access.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from preprocess_service import artifacts, presenter
from preprocess_service.access import Caller
from preprocess_service.dependencies import OwnerDep, ServicesDep
from preprocess_service.errors import NotFound
from preprocess_service.history.models import AnalysisRecord
from preprocess_service.history.store import Summary
from preprocess_service.schemas import (
    AnalysisPage,
    AnalysisSummary,
    ErasureResponse,
    ErrorResponse,
    StatsResponse,
    StoredAnalysis,
)
from preprocess_service.services import Services

router = APIRouter(tags=["history"])
SHA256 = "^[0-9a-f]{64}$"
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such analysis of this caller's"}
}


def _summary(record: Summary) -> AnalysisSummary:
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
        checkpoint_sha256=record.checkpoint_sha256,
        untrained_demo=record.untrained_demo,
        processing_time_sec=record.total_s,
        request_id=record.request_id,
    )


@router.get("/analyses", response_model=AnalysisPage)
async def list_analyses(
    services: ServicesDep,
    caller: OwnerDep,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 20,
    verdict: Literal["FAKE", "REAL"] | None = None,
    sha256: Annotated[str | None, Query(pattern=SHA256)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    checkpoint_sha256: Annotated[
        str | None, Query(max_length=128, description="the model that answered (its checkpoint hash, or a prefix)")
    ] = None,
    precision: Literal["fp32", "bf16", "int8"] | None = None,
) -> AnalysisPage:
    """Newest first; ``verdict``, ``sha256``, the model (``checkpoint_sha256``, ``precision``: answers
    of different models do not compare) and a time range (ISO 8601, ``since`` ≤ t < ``until``; a time
    without an offset is UTC) filter. Summaries only: the answers stay in the database."""
    store = services.history.require()
    found = await asyncio.to_thread(
        store.page, caller.owner_filter, page, per_page, verdict, sha256, since, until, checkpoint_sha256, precision
    )
    return AnalysisPage(items=[_summary(r) for r in found.items], total=found.total, page=page, per_page=per_page)


async def _record(services: Services, caller: Caller, analysis_id: str) -> AnalysisRecord:
    record = await asyncio.to_thread(services.history.require().get, analysis_id, caller.owner_filter)
    if record is None:  # another owner's analysis is as absent as one that never existed
        raise NotFound(f"no analysis {analysis_id[:64]!r} in this caller's history")
    return record


@router.get("/analyses/{analysis_id}.csv", responses={**NOT_FOUND, 200: {"content": {"text/csv": {}}}})
async def analysis_csv(analysis_id: str, services: ServicesDep, caller: OwnerDep) -> Response:
    """The analysis's per-frame scores, as /predict_csv/ gave them."""
    record = await _record(services, caller, analysis_id)
    return Response(
        presenter.csv_from_answer(record.answer),
        media_type="text/csv",
        headers={"Content-Disposition": presenter.csv_content_disposition(record.filename)},
    )


@router.get("/analyses/{analysis_id}", response_model=StoredAnalysis, responses=NOT_FOUND)
async def get_analysis(analysis_id: str, services: ServicesDep, caller: OwnerDep) -> StoredAnalysis:
    """The whole answer as it was given, with when it was made."""
    record = await _record(services, caller, analysis_id)
    return StoredAnalysis(id=record.id, created_at=record.created_at.isoformat(), answer=record.answer)


async def _erase(services: Services, caller: Caller, **which: str) -> ErasureResponse:
    erased = await asyncio.to_thread(services.history.require().delete, caller.owner_filter, **which)
    if services.settings.artifacts and erased:
        await asyncio.to_thread(artifacts.remove, services.settings.artifacts_dir, erased)
    return ErasureResponse(deleted=len(erased), ids=erased)


@router.delete("/analyses/{analysis_id}", response_model=ErasureResponse, responses=NOT_FOUND)
async def delete_analysis(analysis_id: str, services: ServicesDep, caller: OwnerDep) -> ErasureResponse:
    """Erases one analysis and its images (an operator: anyone's)."""
    erased = await _erase(services, caller, analysis_id=analysis_id)
    if not erased.deleted:
        raise NotFound(f"no analysis {analysis_id[:64]!r} in this caller's history")
    return erased


@router.delete("/analyses", response_model=ErasureResponse)
async def delete_analyses_of_file(
    services: ServicesDep,
    caller: OwnerDep,
    sha256: Annotated[str, Query(pattern=SHA256, description="erase every analysis of this file")],
) -> ErasureResponse:
    """Erases every analysis of one file (its SHA-256) and their images: the caller's own, or, for
    an operator, everyone's. Where the videos show people, erasure on request is their right."""
    return await _erase(services, caller, sha256=sha256)


@router.get("/stats", response_model=StatsResponse)
async def stats(services: ServicesDep, caller: OwnerDep) -> StatsResponse:
    """The caller's counts, verdict split and latency percentiles (its latest 10 000 analyses)."""
    return StatsResponse(**await asyncio.to_thread(services.history.require().stats, caller.owner_filter))
