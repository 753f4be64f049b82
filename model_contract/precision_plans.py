"""The precision plans an export measured for one checkpoint, and which one a service serves.

``deepfake-export --precision auto`` tries fp32, bf16, int8 and mixed int8 plans (the layers whose
int8 moves P(FAKE) most kept at fp32) on each runtime that may serve them, measures each on held-out
videos and for speed, and writes every row to ``precision_plans.json`` at the repository's root
(listed in SHA256SUMS like every other file). The service with ``DEEPFAKE_PRECISION=auto`` reads
it back and serves the fastest row that kept P(FAKE) within the bound, on a runtime it has. Both
sides import this module, so the file's format lives in one place; torch-free.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

PLANS_FILE = "precision_plans.json"
PRECISION_PLAN = "precision_plan"  # model parameter: the plan a reduced backbone was made by
FORMAT = 1


@dataclass(frozen=True)
class PlanRow:
    """One plan on one runtime: how fast, and how far its P(FAKE) moved from fp32's on held-out videos."""

    plan: str  # "fp32", "bf16", "int8", "int8-mixed" (some Conv layers kept at fp32)
    precision: str  # the model slot it is published in: fp32, bf16 or int8
    runtime: str  # onnxruntime or openvino
    faces_per_s: float  # backbone throughput at the service's batch, median of repeats
    max_delta_frame: float  # max |ΔP(FAKE)| per held-out frame against fp32 on ONNX Runtime
    max_delta_video: float  # the same per held-out video (the sequence verdict)
    bound: float
    kept: tuple[str, ...] = ()  # mixed plans: the blocks kept at fp32 (scope names in the ONNX graph)
    blocks: int = 0  # mixed plans: the quantised blocks there are
    published: bool = False  # its model file is the one in the repository
    calibration_delta: float = 0.0  # max |ΔP(FAKE)| per frame or video on the calibration videos: what chose it

    def __post_init__(self) -> None:
        object.__setattr__(self, "kept", tuple(self.kept))  # a list when read back from JSON

    @property
    def ok(self) -> bool:
        return self.max_delta_frame <= self.bound and self.max_delta_video <= self.bound

    def describe(self) -> str:
        kept = f" ({len(self.kept)} of {self.blocks} blocks at fp32)" if self.kept else ""
        return f"{self.plan}{kept}"


@dataclass(frozen=True)
class PlanTable:
    rows: list[PlanRow]
    chosen: PlanRow | None  # the fastest row within the bound (None: fp32 is served)
    held_out: list[str] = field(default_factory=list)  # the videos the bound was checked on
    machine: dict = field(default_factory=dict)  # where faces/s were measured

    def fp32_faces_per_s(self) -> float:
        return max((row.faces_per_s for row in self.rows if row.plan == "fp32"), default=0.0)


def write_plans(repository: Path, table: PlanTable) -> Path:
    path = repository / PLANS_FILE
    payload = {
        "format": FORMAT,
        "held_out": table.held_out,
        "machine": table.machine,
        "chosen": asdict(table.chosen) if table.chosen else None,
        "rows": [asdict(row) for row in table.rows],
    }
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(payload, indent=2) + "\n")
    temporary.replace(path)
    return path


def read_plans(repository: Path) -> PlanTable | None:
    """None when the export measured no plans here; ValueError when the file is not one of ours."""
    path = repository / PLANS_FILE
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise ValueError(f"not format {FORMAT}")
        rows = [_checked(PlanRow(**row)) for row in payload["rows"]]
        chosen = _checked(PlanRow(**payload["chosen"])) if payload.get("chosen") else None
        table = PlanTable(rows, chosen, [str(name) for name in payload["held_out"]], dict(payload["machine"]))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        why = f"{path.name}: not a precision plan table ({error}): re-export with --precision auto"
        raise ValueError(why) from error
    return table


def _checked(row: PlanRow) -> PlanRow:
    """A row a service can act on: a known slot and runtime, numbers where numbers go."""
    if row.precision not in ("fp32", "bf16", "int8") or row.runtime not in ("onnxruntime", "openvino"):
        raise ValueError(f"unknown precision or runtime in {row.plan!r}")
    for value in (row.faces_per_s, row.max_delta_frame, row.max_delta_video, row.bound):
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ValueError(f"not a number: {value!r}")
    return row


def servable(table: PlanTable, runtimes: set[str]) -> PlanRow | None:
    """The fastest published plan within the bound on one of ``runtimes`` (fp32 included: it may be
    the fastest, on the runtime of its row); None when no row names one of ``runtimes``."""
    candidates = [row for row in table.rows if row.ok and row.published and row.runtime in runtimes]
    return max(candidates, key=lambda row: row.faces_per_s, default=None)
