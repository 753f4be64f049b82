"""The seed's two analysis endpoints: a verdict with evidence, and per-frame scores (JSON or CSV)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import Response

from preprocess_service import presenter
from preprocess_service.dependencies import AdmittedDep, ServicesDep, UploadDep, multipart_body
from preprocess_service.schemas import PredictCsvResponse, PredictResponse

router = APIRouter(tags=["predict"])


@router.post("/predict/", response_model=PredictResponse, openapi_extra=multipart_body())
async def predict(
    caller: AdmittedDep,
    background: BackgroundTasks,
    upload: UploadDep,
    services: ServicesDep,
    refresh: Annotated[bool, Query(description="analyze again even if the history has this file")] = False,
) -> PredictResponse:
    """A file this caller already analyzed with the same model and settings is answered from its own
    history (``cached: true``, the original ``analyzed_at``, a receipt signed now)."""
    return await services.predictions.predict(caller, upload, refresh, background.add_task)


@router.post(
    "/predict_csv/",
    response_model=PredictCsvResponse,
    openapi_extra=multipart_body(),
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV when asked"}},
)
async def predict_csv(
    caller: AdmittedDep,
    request: Request,
    upload: UploadDep,
    services: ServicesDep,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
) -> PredictCsvResponse | Response:
    """Scores of all N sampled frames; CSV with ``Accept: text/csv`` or ``?format=csv``."""
    scores = await services.predictions.frame_scores(upload)
    if presenter.wants_csv(format, request.headers.get("accept", "")):
        return presenter.csv_file(scores.analysis, upload, scores.receipt)
    return presenter.csv_response(scores.analysis, upload, scores.receipt)
