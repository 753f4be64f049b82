"""The seed's two analysis endpoints: a verdict with evidence, and per-frame scores (JSON or CSV)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import Response

from preprocess_service import artifacts, presenter
from preprocess_service.dependencies import AdmittedCaller, Services, ServicesDep, UploadDep, multipart_body
from preprocess_service.history.recorder import model_key
from preprocess_service.pipeline import Analysis
from preprocess_service.receipts import receipt_claims, reissued_claims
from preprocess_service.schemas import PredictCsvResponse, PredictResponse
from preprocess_service.uploads import Upload

RECEIPT_HEADER = "X-Deepfake-Receipt"  # the CSV answer's receipt (the JSON answers carry it in the body)


def _receipt(services: Services, analysis: Analysis, upload: Upload, analysis_id: str | None) -> str:
    claims = receipt_claims(analysis, upload.sha256, upload.size, datetime.now(UTC), analysis_id)
    return services.signer.sign_receipt(claims)


router = APIRouter(tags=["predict"])


@router.post("/predict/", response_model=PredictResponse, openapi_extra=multipart_body())
async def predict(  # the caller first: admitted (key, rate, slot) before a byte of the upload is read
    caller: AdmittedCaller,
    background: BackgroundTasks,
    upload: UploadDep,
    services: ServicesDep,
    refresh: Annotated[bool, Query(description="analyse again even if the history has this file")] = False,
) -> PredictResponse:
    """A file this caller already analysed with the same model and settings is answered from its own
    history (``cached: true``, the original ``analyzed_at``, a receipt signed now)."""
    settings, history, owner = services.settings, services.history, caller.owner
    key = model_key(await services.analyzer.model_info(), settings)
    if not refresh and (cached := await history.cached_answer(owner, upload.sha256, key)) is not None:
        receipt = services.signer.sign_receipt(reissued_claims(cached["receipt"], datetime.now(UTC)))
        return PredictResponse(**{**cached, "filename": upload.filename, "cached": True, "receipt": receipt})
    analysis = await services.analyzer.analyse(upload.path)
    analysis_id = artifacts.new_analysis_id()
    keep_images = settings.artifacts and owner is not None  # a caller who owns nothing keeps no images
    if settings.artifacts and owner is not None:
        images = presenter.display_images(analysis, settings.display_frames)
        background.add_task(artifacts.write_images, settings.artifacts_dir, owner, analysis_id, images)
    receipt = _receipt(services, analysis, upload, analysis_id)
    answer = presenter.predict_response(
        analysis, upload, settings.display_frames, analysis_id if keep_images else None, receipt
    )
    if await history.record(analysis_id, owner, key, answer.model_dump(mode="json"), upload.size):
        answer.history_id = analysis_id
    return answer


@router.post(
    "/predict_csv/",
    response_model=PredictCsvResponse,
    openapi_extra=multipart_body(),
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV when asked"}},
)
async def predict_csv(
    caller: AdmittedCaller,
    request: Request,
    upload: UploadDep,
    services: ServicesDep,
    format: Annotated[Literal["json", "csv"] | None, Query()] = None,
):
    """Scores of all N sampled frames; CSV with ``Accept: text/csv`` or ``?format=csv``."""
    analysis = await services.analyzer.analyse(upload.path)
    receipt = _receipt(services, analysis, upload, None)
    wants_csv = format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))
    if not wants_csv:
        return presenter.csv_response(analysis, upload, receipt)
    return Response(
        presenter.csv_text(analysis),
        media_type="text/csv",
        headers={"Content-Disposition": presenter.csv_content_disposition(upload.filename), RECEIPT_HEADER: receipt},
    )
