"""Turn an Analysis into what the endpoints answer: the seed's fields first, then what was added.

Routes stay thin: they receive, analyze and hand the analysis here. The model block is the same in
every answer (``/predict/``, ``/predict_csv/`` JSON and CSV, ``/readyz``), so that whoever reads an
answer can tell which checkpoint, architecture and preprocessing produced it.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from urllib.parse import quote

import numpy as np
from fastapi.responses import Response

from model_contract.identity import ModelInfo
from preprocess_service import artifacts
from preprocess_service.pipeline import Analysis
from preprocess_service.schemas import (
    CroppedFace,
    DisplayFrame,
    FrameRow,
    ModelInfoModel,
    PredictCsvResponse,
    PredictResponse,
    PreprocessingModel,
    StageTimes,
    VerdictModel,
)
from preprocess_service.uploads import Upload

CSV_COLUMNS = ("frame_index", "frame_time_sec", "confidence", "label", "p_fake", "detector")
CSV_MODEL_COLUMNS = (
    "model_family",
    "model_preprocessing",
    "model_precision",
    "model_checkpoint_sha256",
    "model_untrained_demo",
    "model_architecture",
)


def model_block(model: ModelInfo) -> ModelInfoModel:
    return ModelInfoModel(
        family=model.family,
        untrained_demo=model.untrained_demo,
        backend=model.backend,
        precision=model.precision,
        plan=model.plan or model.precision,
        plan_reason=model.plan_reason,
        runtime=model.runtime,
        checkpoint_sha256=model.checkpoint_sha256,
        architecture=model.architecture,
        preprocessing=PreprocessingModel(**model.preprocessing.describe()),
    )


def frame_rows(analysis: Analysis) -> list[FrameRow]:
    boxes, used = analysis.faces.boxes, analysis.faces.detector_used
    return [
        FrameRow(
            frame_index=f.frame_index,
            frame_time_sec=f.frame_time_sec,
            confidence=f.confidence,
            label=f.label,
            p_fake=f.p_fake,
            detector=used.get(f.frame_index),
            box=boxes.get(f.frame_index),
        )
        for f in analysis.frames
    ]


def predict_response(analysis: Analysis, upload: Upload, analysis_id: str | None, receipt: str) -> PredictResponse:
    shown = analysis.display
    score_of = {frame.frame_index: frame for frame in analysis.frames}
    faces = analysis.faces
    verdict = analysis.verdict
    return PredictResponse(
        result=verdict.label,
        confidence=verdict.confidence,
        p_fake=round(verdict.p_fake, 6),
        verdict_rule=analysis.rule,
        verdicts={
            rule: VerdictModel(
                result=v.label,
                confidence=v.confidence,
                p_fake=round(v.p_fake, 6),
                frame_indices=v.frame_indices,
                threshold=v.threshold,
            )
            for rule, v in analysis.verdicts.items()
        },
        untrained_demo=analysis.model.untrained_demo,
        processing_time_sec=round(analysis.timings["total"], 3),
        filename=upload.filename,
        sha256_hex=upload.sha256,
        analyzed_at=datetime.now(UTC).isoformat(),
        metadata=analysis.video.metadata,
        frames_for_display=[
            DisplayFrame(
                frame_index=i,
                frame_time_sec=score_of[i].frame_time_sec,
                url=artifacts.frame_url(analysis_id, i) if analysis_id else None,
                confidence=score_of[i].confidence,
                label=score_of[i].label,
                p_fake=score_of[i].p_fake,
            )
            for i in shown
        ],
        cropped_faces=[
            CroppedFace(
                frame_index=i,
                url=artifacts.face_url(analysis_id, i) if analysis_id else None,
                box=faces.boxes[i],
                detector=faces.detector_used[i],
            )
            for i in shown
            if i in faces.boxes
        ],
        frames_csv_indices=list(analysis.video.sample_indices),
        frames_analyzed=len(analysis.frames),
        frames_with_face=sum(frame.p_fake is not None for frame in analysis.frames),
        stage_times_sec=StageTimes(**{k: round(v, 4) for k, v in analysis.timings.items()}),
        model=model_block(analysis.model),
        frames=frame_rows(analysis),
        receipt=receipt,
    )


def display_images(analysis: Analysis) -> dict[str, np.ndarray]:
    """The JPEGs an artifact-writing service stores for the display frames (frame and model input)."""
    crops = analysis.faces
    shown = analysis.display
    images = {f"frame_{i}.jpg": rgb for i in shown if (rgb := analysis.video.frames[i].rgb) is not None}
    images.update({f"face_{i}.jpg": crops.crops[crops.positions.index(i)] for i in shown if i in crops.positions})
    return images


def csv_response(analysis: Analysis, upload: Upload, receipt: str) -> PredictCsvResponse:
    return PredictCsvResponse(
        untrained_demo=analysis.model.untrained_demo,
        filename=upload.filename,
        frames_csv=frame_rows(analysis),
        model=model_block(analysis.model),
        receipt=receipt,
    )


RECEIPT_HEADER = "X-Deepfake-Receipt"  # the CSV answer's receipt (the JSON answers carry it in the body)


def wants_csv(format: str | None, accept: str) -> bool:
    """``?format=csv`` or ``?format=json`` decides; without it, an ``Accept`` naming text/csv."""
    return format == "csv" or (format is None and "text/csv" in accept)


def csv_file(analysis: Analysis, upload: Upload, receipt: str) -> Response:
    """The per-frame scores as a CSV download named after the upload, its receipt in a header."""
    return Response(
        csv_text(analysis),
        media_type="text/csv",
        headers={"Content-Disposition": csv_content_disposition(upload.filename), RECEIPT_HEADER: receipt},
    )


def csv_text(analysis: Analysis) -> str:
    """The seed's columns first; the model that produced the rows on every row, so a file read on its
    own still says which checkpoint, architecture and preprocessing it came from."""
    return _csv(model_block(analysis.model), [row.model_dump() for row in frame_rows(analysis)])


def csv_from_answer(answer: dict) -> str:
    """The same CSV from a stored /predict/ answer (the history)."""
    return _csv(ModelInfoModel(**answer["model"]), answer["frames"])


def _csv(model: ModelInfoModel, rows: list[dict]) -> str:
    model_cells = {
        "model_family": model.family,
        "model_preprocessing": model.preprocessing.name,
        "model_precision": model.precision,
        "model_checkpoint_sha256": model.checkpoint_sha256,
        "model_untrained_demo": str(model.untrained_demo).lower(),
        "model_architecture": " ".join(f"{k}={v}" for k, v in model.architecture.items()),
    }
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=(*CSV_COLUMNS, *CSV_MODEL_COLUMNS), lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows({**row, **model_cells} for row in rows)
    return buffer.getvalue()


def csv_content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII ``filename`` for old clients and the exact name as ``filename*`` (UTF-8)."""
    stem = (filename.rsplit(".", 1)[0] or "frames") + "_frames.csv"
    ascii_stem = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in stem)
    return f"attachment; filename=\"{ascii_stem}\"; filename*=UTF-8''{quote(stem)}"
