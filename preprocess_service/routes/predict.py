"""The seed's two analysis endpoints: a verdict with evidence, and per-frame scores (JSON or CSV)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import Response

from preprocess_service import artifacts, presenter
from preprocess_service.dependencies import Services, admitted, get_services, multipart_body, received_upload
from preprocess_service.pipeline import Analysis
from preprocess_service.schemas import PredictCsvResponse, PredictResponse
from preprocess_service.uploads import Upload

router = APIRouter(tags=["predict"])


async def _analyse(services: Services, upload: Upload) -> Analysis:
    model = await services.model_info()
    analysis = await services.analyzer.analyse(upload.path, model)
    for stage, seconds in analysis.timings.items():
        services.metrics.stage_seconds.labels(stage).observe(seconds)
    services.metrics.backbone_batch.observe(len(analysis.faces.positions))
    return analysis


@router.post(
    "/predict/", response_model=PredictResponse, openapi_extra=multipart_body(), dependencies=[Depends(admitted)]
)
async def predict(
    background: BackgroundTasks, upload: Upload = Depends(received_upload), services: Services = Depends(get_services)
) -> PredictResponse:
    analysis = await _analyse(services, upload)
    settings = services.settings
    analysis_id = artifacts.new_analysis_id() if settings.artifacts else None
    if analysis_id:
        background.add_task(
            artifacts.write_images,
            settings.artifacts_dir,
            analysis_id,
            presenter.display_images(analysis, settings.display_frames),
        )
    return presenter.predict_response(analysis, upload, settings.display_frames, analysis_id)


def _wants_csv(request: Request, format: str | None) -> bool:
    return format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))


@router.post(
    "/predict_csv/",
    response_model=PredictCsvResponse,
    openapi_extra=multipart_body(),
    dependencies=[Depends(admitted)],
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV when asked"}},
)
async def predict_csv(
    request: Request,
    format: str | None = Query(None, pattern="^(json|csv)$"),
    upload: Upload = Depends(received_upload),
    services: Services = Depends(get_services),
):
    """Scores of all N sampled frames; CSV with ``Accept: text/csv`` or ``?format=csv``."""
    analysis = await _analyse(services, upload)
    if not _wants_csv(request, format):
        return presenter.csv_response(analysis, upload)
    return Response(
        presenter.csv_text(analysis),
        media_type="text/csv",
        headers={"Content-Disposition": presenter.csv_content_disposition(upload.filename)},
    )
