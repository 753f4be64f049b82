"""The seed's two analysis endpoints: a verdict with evidence, and per-frame scores (JSON or CSV)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Request
from fastapi.responses import Response

from preprocess_service import artifacts
from preprocess_service.dependencies import Services, admitted, get_services, multipart_body, received_upload
from preprocess_service.pipeline import Analysis, display_positions
from preprocess_service.schemas import (CroppedFace, DisplayFrame, FrameRow, ModelInfoModel, PredictCsvResponse,
                                        PredictResponse, StageTimes)
from preprocess_service.uploads import Upload

router = APIRouter(tags=["predict"])
CSV_COLUMNS = ("frame_index", "frame_time_sec", "confidence", "label", "p_fake")


async def _analyse(services: Services, upload: Upload) -> Analysis:
    model = await services.model_info()
    analysis = await services.analyzer.analyse(upload.path, model)
    for stage, seconds in analysis.timings.items():
        services.metrics.stage_seconds.labels(stage).observe(seconds)
    services.metrics.backbone_batch.observe(len(analysis.faces.positions))
    return analysis


def _frame_rows(analysis: Analysis) -> list[FrameRow]:
    return [FrameRow(frame_index=f.frame_index, frame_time_sec=f.frame_time_sec, confidence=f.confidence,
                     label=f.label, p_fake=f.p_fake) for f in analysis.frames]


@router.post("/predict/", response_model=PredictResponse, openapi_extra=multipart_body(),
             dependencies=[Depends(admitted)])
async def predict(background: BackgroundTasks, upload: Upload = Depends(received_upload),
                  services: Services = Depends(get_services)) -> PredictResponse:
    analysis = await _analyse(services, upload)
    settings = services.settings
    shown = display_positions(analysis, settings.display_frames)
    score_of = {frame.frame_index: frame for frame in analysis.frames}
    analysis_id = artifacts.new_analysis_id() if settings.artifacts else None
    if analysis_id:
        images = {f"frame_{i}.jpg": analysis.video.frames[i].rgb for i in shown}
        images.update({f"face_{i}.jpg": analysis.faces.crops[analysis.faces.positions.index(i)] for i in shown})
        background.add_task(artifacts.write_images, settings.artifacts_dir, analysis_id, images)

    return PredictResponse(
        result=analysis.label,
        confidence=analysis.confidence,
        p_fake=round(analysis.p_fake, 6),
        processing_time_sec=round(analysis.timings["total"], 3),
        filename=upload.filename,
        sha256_hex=upload.sha256,
        analyzed_at=datetime.now(timezone.utc).isoformat(),
        metadata=analysis.video.metadata,
        frames_for_display=[
            DisplayFrame(frame_index=i, frame_time_sec=score_of[i].frame_time_sec,
                         url=artifacts.frame_url(analysis_id, i) if analysis_id else None,
                         confidence=score_of[i].confidence, label=score_of[i].label, p_fake=score_of[i].p_fake)
            for i in shown
        ],
        cropped_faces=[
            CroppedFace(frame_index=i, url=artifacts.face_url(analysis_id, i) if analysis_id else None,
                        box=analysis.faces.boxes[i], detector=analysis.faces.detector_used[i])
            for i in shown
        ],
        frames_csv_indices=list(analysis.video.sample_indices),
        frames_analyzed=len(analysis.frames),
        frames_with_face=sum(frame.p_fake is not None for frame in analysis.frames),
        stage_times_sec=StageTimes(**{k: round(v, 4) for k, v in analysis.timings.items()}),
        model=ModelInfoModel(family=analysis.model.family, untrained_demo=analysis.model.untrained_demo,
                             backend=analysis.model.backend, checkpoint_sha256=analysis.model.checkpoint_sha256),
    )


def _wants_csv(request: Request, format: str | None) -> bool:
    return format == "csv" or (format is None and "text/csv" in request.headers.get("accept", ""))


@router.post("/predict_csv/", response_model=PredictCsvResponse, openapi_extra=multipart_body(),
             dependencies=[Depends(admitted)],
             responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV when asked"}})
async def predict_csv(request: Request, format: str | None = Query(None, pattern="^(json|csv)$"),
                      upload: Upload = Depends(received_upload), services: Services = Depends(get_services)):
    """Scores of all N sampled frames; CSV with ``Accept: text/csv`` or ``?format=csv``."""
    rows = _frame_rows(await _analyse(services, upload))
    if not _wants_csv(request, format):
        return PredictCsvResponse(filename=upload.filename, frames_csv=rows)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(row.model_dump() for row in rows)
    stem = upload.filename.rsplit(".", 1)[0] or "frames"
    return Response(buffer.getvalue(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{stem}_frames.csv"'})
