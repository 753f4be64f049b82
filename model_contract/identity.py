"""What a served model says about itself: its identity, its verdict rules and their thresholds.

Read from the parameters every export records (config.pbtxt ``parameters``, ONNX metadata), by
both sides: the service shows it in every answer and keys its cache on it; the export writes it.
No torch and nothing of the service here, so inference backends, settings and scoring all take
their rules from one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from model_contract import CHECKPOINT_SHA256, FAMILY, MAX_TIME, PRECISION, UNTRAINED_DEMO, threshold_key
from model_contract.precision_plans import PRECISION_PLAN
from model_contract.preprocessing import PreprocessingProfile

Rule = Literal["sequence", "original"]
RULES: tuple[Rule, ...] = ("sequence", "original")
DEFAULT_THRESHOLD = 0.5  # P(FAKE) at or above which a rule says FAKE, unless an evaluation recorded another


class ModelMismatch(ValueError):
    """The recorded parameters contradict the served model (re-export it)."""


@dataclass(frozen=True)
class ModelInfo:
    """What an export recorded about its model (``parameters`` of config.pbtxt / ONNX metadata)."""

    family: str
    input_size: int
    untrained_demo: bool
    checkpoint_sha256: str
    backend: str
    preprocessing: PreprocessingProfile
    architecture: dict[str, str] = field(default_factory=dict)  # sizes read from the checkpoint, heads, ...
    max_time: int | None = None  # longest sequence the temporal head takes (None: no limit)
    precision: str = "fp32"  # the backbone's arithmetic
    plan: str = ""  # the precision plan the export published in this slot (empty: the precision, whole)
    plan_reason: str = ""  # why the service serves it (set by the service, not recorded by the export)
    runtime: str = "unknown"  # the engine that runs it, as it reports itself
    thresholds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(RULES, DEFAULT_THRESHOLD))

    @classmethod
    def from_parameters(
        cls, parameters: dict[str, str], input_size: int, backend: str, runtime: str = "unknown"
    ) -> ModelInfo:
        """Raises ModelMismatch when the preprocessing profile's size is not the model's input size."""
        preprocessing = PreprocessingProfile.from_parameters(parameters, input_size)
        if preprocessing.size != input_size:
            raise ModelMismatch(
                f"the model takes {input_size} px but its preprocessing profile says {preprocessing.size}: re-export it"
            )
        recorded_elsewhere = {
            *(FAMILY, CHECKPOINT_SHA256, UNTRAINED_DEMO, MAX_TIME, PRECISION, PRECISION_PLAN),
            "input_size",
        }
        architecture = {
            key: value
            for key, value in parameters.items()
            if key not in recorded_elsewhere and not key.startswith(("preprocessing", "verdict_threshold_"))
        }
        max_time = parameters.get(MAX_TIME, "none")
        return cls(
            family=parameters.get(FAMILY, "unknown"),
            input_size=input_size,
            untrained_demo=parameters.get(UNTRAINED_DEMO, "false") == "true",
            checkpoint_sha256=parameters.get(CHECKPOINT_SHA256, "unknown"),
            backend=backend,
            preprocessing=preprocessing,
            architecture=architecture,
            max_time=int(max_time) if max_time.isdigit() else None,
            precision=parameters.get(PRECISION, "fp32"),
            plan=parameters.get(PRECISION_PLAN, ""),
            runtime=runtime,
            thresholds={rule: float(parameters.get(threshold_key(rule), DEFAULT_THRESHOLD)) for rule in RULES},
        )
