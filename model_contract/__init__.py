"""The contract between an exported model and whoever serves or calls it, with no torch in it.

``export/`` writes models that keep it; ``preprocess_service/`` reads it back from the served
model's parameters (config.pbtxt) or ONNX metadata. Names here are on the wire and in users'
model repositories: change none of them without a new model version.
"""

from __future__ import annotations

from model_contract.preprocessing import PROFILES, PreprocessingProfile, default_profile

BACKBONE_MODEL = "deepfake_backbone"
TEMPORAL_MODEL = "deepfake_temporal"
BACKBONE_INPUT, BACKBONE_OUTPUT = "faces", "features"  # uint8 [n, S, S, 3] RGB -> float32 [n, FEATURE_DIM]
TEMPORAL_INPUT, TEMPORAL_OUTPUTS = "features", ("probabilities", "logits")  # [b, t, FEATURE_DIM] -> [b, 2]
FEATURE_DIM = 2048  # ResNeXt50's pooled features, both families
LABELS = ("FAKE", "REAL")  # index 0 = FAKE, 1 = REAL, as the original
LABELS_FILE = "labels.txt"
DEFAULT_MAX_BATCH = 64

# Keys of the model parameters every export records (config.pbtxt ``parameters``, ONNX metadata).
# Architecture keys (lstm_hidden, num_heads, ...) are recorded beside them and shown as they are.
FAMILY, CHECKPOINT_SHA256, UNTRAINED_DEMO, MAX_TIME = "family", "checkpoint_sha256", "untrained_demo", "max_time"
PRECISION = "precision"  # the backbone's arithmetic: one of PRECISIONS

# The backbone is ~85 % of the time per video, so it is the half exported at reduced precision;
# the temporal head (a few MFLOP) stays fp32. fp32 keeps the plain name users' repositories have.
PRECISIONS = ("fp32", "bf16", "int8")


def threshold_key(rule: str) -> str:
    """Parameter holding the P(FAKE) threshold an evaluation chose for a verdict rule (default 0.5)."""
    return f"verdict_threshold_{rule}"


def backbone_model_name(precision: str = "fp32") -> str:
    """``deepfake_backbone`` for fp32, ``deepfake_backbone_<precision>`` otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: one of {', '.join(PRECISIONS)}")
    return BACKBONE_MODEL if precision == "fp32" else f"{BACKBONE_MODEL}_{precision}"


__all__ = [
    "BACKBONE_INPUT",
    "BACKBONE_MODEL",
    "BACKBONE_OUTPUT",
    "CHECKPOINT_SHA256",
    "DEFAULT_MAX_BATCH",
    "FAMILY",
    "FEATURE_DIM",
    "LABELS",
    "LABELS_FILE",
    "MAX_TIME",
    "PRECISION",
    "PRECISIONS",
    "PROFILES",
    "PreprocessingProfile",
    "TEMPORAL_INPUT",
    "TEMPORAL_MODEL",
    "TEMPORAL_OUTPUTS",
    "UNTRAINED_DEMO",
    "backbone_model_name",
    "threshold_key",
    "default_profile",
]
