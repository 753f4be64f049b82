"""The seed's two analysis endpoints: a verdict with evidence, and per-frame scores (JSON or CSV)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import Response

from preprocess_service import artifacts, presenter
from preprocess_service.dependencies import Admitted, ServicesDep, UploadDep, multipart_body
from preprocess_service.schemas import PredictCsvResponse, PredictResponse

router = APIRouter(tags=["predict"], dependencies=[Admitted])


@router.post("/predict/", response_model=PredictResponse, openapi_extra=multipart_body())
async def predict(background: BackgroundTasks, upload: UploadDep, services: ServicesDep) -> PredictResponse:
    analysis = await services.analyzer.analyse(upload.path)
    settings = services.settings
    analysis_id = artifacts.new_analysis_id() if settings.artifacts else None
    if analysis_id:
        images = presenter.display_images(analysis, settings.display_frames)
        background.add_task(artifacts.write_images, settings.artifacts_dir, analysis_id, images)
    return presenter.predict_response(analysis, upload, settings.display_frames, analysis_id)


@router.post(
    "/predict_csv/",
    response_model=PredictCsvResponse,
    openapi_extra=multipart_body(),
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV when asked"}},
)
async def predict_csv(
    request: Request,
    upload: UploadDep,
    services: ServicesDep,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
):
    """Scores of all N sampled frames; CSV with ``Accept: text/csv`` or ``?format=csv``."""
    analysis = await services.analyzer.analyse(upload.path)
    wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    if not wants_csv:
        return presenter.csv_response(analysis, upload)
    return Response(
        presenter.csv_text(analysis),
        media_type="text/csv",
        headers={"Content-Disposition": presenter.csv_content_disposition(upload.filename)},
    )
