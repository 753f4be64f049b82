"""Signed analysis receipts: what this service said about which file, checkable offline.

Every answer carries a compact JWS (RS256, signed with the integrity key, ``kid`` its key id) over
the file's SHA-256 and size, the model's identity (checkpoint hash, precision and plan, preprocessing,
demo flag), both verdicts with their thresholds, a digest of every per-frame score, and the time. With
the public key (``GET /integrity/public-keys``) anyone can check it without this service: a changed
byte in the file, a changed score or another key fails it. ``POST /integrity/verify-receipt`` and
``deepfake-client receipt verify`` do the same checks.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime

from model_contract.receipts import frames_digest
from preprocess_service.pipeline import Analysis
from preprocess_service.scoring import FrameScore

__all__ = ["frames_digest", "receipt_claims", "reissued_claims"]
ISSUER = "deepfake-detector"
VERSION = 1


def scored(frames: list[FrameScore]) -> list[tuple[int, float | None]]:
    return [(frame.frame_index, frame.p_fake) for frame in frames]


def receipt_claims(analysis: Analysis, sha256: str, size: int, issued_at: datetime, analysis_id: str | None) -> dict:
    model = analysis.model
    return {
        "iss": ISSUER,
        "v": VERSION,
        "iat": int(issued_at.timestamp()),
        "sub": sha256,
        "file": {"sha256": sha256, "size": size},
        "model": {
            "checkpoint_sha256": model.checkpoint_sha256,
            "family": model.family,
            "precision": model.precision,
            # as the answer's model block shows it: int8-mixed keeps some blocks at fp32, which the precision cannot say
            "plan": model.plan or model.precision,
            "preprocessing": model.preprocessing.name,
            "untrained_demo": model.untrained_demo,
        },
        "rule": analysis.rule,
        "result": analysis.verdict.label,
        "verdicts": {
            rule: {"result": v.label, "p_fake": round(v.p_fake, 6), "threshold": v.threshold}
            for rule, v in analysis.verdicts.items()
        },
        "frames_digest": frames_digest(scored(analysis.frames)),
        "analysis_id": analysis_id,
    }


def reissued_claims(stored_receipt: str, issued_at: datetime) -> dict:
    """The claims of a receipt this service stored with an answer, issued anew: a cached answer is
    signed now with the active key (a receipt signed by a key rotated out since would no longer
    verify here), saying the same things about the same file and analysis."""
    payload = stored_receipt.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {**claims, "iat": int(issued_at.timestamp())}
