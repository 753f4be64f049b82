"""One prediction, top to bottom: the owner's cache, the analysis, its id and images, the receipt,
the answer, the record. The routes parse the request, call one method here and return its result.

A cached answer is the owner's own (``history.cached_answer``), re-signed now with the active key;
a fresh one is analyzed, given an id, presented, signed and stored under its owner. The history is
written from the domain objects (the ``Analysis``, the ``Upload``); the answer is stored whole
beside them only to be given back as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from preprocess_service import artifacts, presenter
from preprocess_service.access import Caller
from preprocess_service.history.recorder import History, model_key
from preprocess_service.integrity import Signer
from preprocess_service.pipeline import Analysis, Analyzer
from preprocess_service.receipts import receipt_claims, reissued_claims
from preprocess_service.schemas import PredictResponse
from preprocess_service.settings import Settings
from preprocess_service.uploads import Upload

log = logging.getLogger("deepfake.predictions")
Schedule = Callable[..., Any]  # runs a function after the answer is sent (FastAPI's BackgroundTasks.add_task)


@dataclass(frozen=True)
class FrameScores:
    """What /predict_csv/ answers: the analysis and its receipt (JSON or CSV is the route's choice)."""

    analysis: Analysis
    receipt: str


class Predictions:
    def __init__(self, settings: Settings, analyzer: Analyzer, history: History, signer: Signer) -> None:
        self._settings, self._analyzer, self._history, self._signer = settings, analyzer, history, signer

    def _receipt(self, analysis: Analysis, upload: Upload, analysis_id: str | None) -> str:
        claims = receipt_claims(analysis, upload.sha256, upload.size, datetime.now(UTC), analysis_id)
        return self._signer.sign_receipt(claims)

    async def predict(self, caller: Caller, upload: Upload, refresh: bool, schedule: Schedule) -> PredictResponse:
        """The /predict/ answer: from the caller's own history when it has this file and model (unless
        ``refresh``), else analyzed now; display images, if kept, are written by ``schedule``."""
        owner = caller.owner
        key = model_key(await self._analyzer.model_info(), self._settings)
        if not refresh and (cached := await self._history.cached_answer(owner, upload.sha256, key)) is not None:
            receipt = self._signer.sign_receipt(reissued_claims(cached["receipt"], datetime.now(UTC)))
            fresh = {"filename": upload.filename, "cached": True, "receipt": receipt}
            demo = {"untrained_demo": cached["model"]["untrained_demo"]}  # rows stored before it was top-level
            return PredictResponse(**{**cached, **demo, **fresh})
        analysis = await self._analyzer.analyze(upload.path)
        analysis_id = artifacts.new_analysis_id()
        images_kept = self._settings.artifacts and owner is not None  # a caller who owns nothing keeps none
        if self._settings.artifacts and owner is not None:
            images = presenter.display_images(analysis)
            schedule(artifacts.write_images, self._settings.artifacts_dir, owner, analysis_id, images)
        receipt = self._receipt(analysis, upload, analysis_id)
        answer = presenter.predict_response(analysis, upload, analysis_id if images_kept else None, receipt)
        if await self._history.record(analysis_id, owner, key, analysis, upload, answer):
            answer.history_id = analysis_id
        log.info(  # no file name: it may name a person; the hash and the id find the analysis
            "analyzed %s (sha256 %s…, %d bytes) in %.2f s: %s %.4f",
            analysis_id,
            upload.sha256[:12],
            upload.size,
            analysis.timings["total"],
            analysis.verdict.label,
            analysis.verdict.p_fake,
        )
        return answer

    async def frame_scores(self, upload: Upload) -> FrameScores:
        """Every sampled frame's score, always analyzed afresh (the original's /predict_csv/)."""
        analysis = await self._analyzer.analyze(upload.path)
        return FrameScores(analysis, self._receipt(analysis, upload, None))
