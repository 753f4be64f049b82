"""``DEEPFAKE_PRECISION=auto``: which backbone plan this service serves, and why, decided once at start.

The export measured every plan for this checkpoint and published only those that kept P(FAKE)
within its bound on held-out videos (``precision_plans.json``, model_contract.precision_plans).
Auto serves the fastest of them on a runtime this process has, and fp32 where the table is missing,
unreadable or names no plan faster than fp32. A bf16 plan is skipped on a processor without
AVX-512 BF16 or AMX, where bf16 is emulated and slower than fp32. The faces/s that rank the plans
were measured where the export ran, which the reason says; an explicit DEEPFAKE_PRECISION is
served as given.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from model_contract.precision_plans import PLANS_FILE, PlanRow, PlanTable, read_plans, servable
from preprocess_service.machine import machine_facts

BF16_INSTRUCTIONS = {"avx512_bf16", "amx_bf16"}


@dataclass(frozen=True)
class ServedPlan:
    precision: str  # the model slot served: fp32, bf16 or int8
    runtime: str  # the embedded engine setting to use (auto, onnxruntime, openvino)
    plan: str  # e.g. "int8-mixed (2 of 19 blocks at fp32)"; the precision when none was measured
    reason: str  # one sentence: why this plan (logged at start, in /readyz and every answer)


def installed_runtimes() -> set[str]:
    found = {"onnxruntime"}
    if importlib.util.find_spec("openvino") is not None:
        found.add("openvino")
    return found


def choose_plan(
    precision: str, runtime: str, backend: str, repository: Path, backbone_model: str | None = None
) -> ServedPlan:
    if precision != "auto":
        return ServedPlan(precision, runtime, precision, f"DEEPFAKE_PRECISION={precision}")
    fp32 = lambda why: ServedPlan("fp32", runtime, "fp32", f"auto: fp32, {why}")  # noqa: E731
    if backbone_model:
        return fp32(f"DEEPFAKE_BACKBONE_MODEL={backbone_model} names the backbone")
    if backend != "embedded":
        # The table lies beside the models Triton loads, not on this pod's disk, and what a slot runs on
        # there (ONNX Runtime, OpenVINO, TensorRT) is Triton's configuration: name the slot explicitly.
        return fp32(f"with {backend}, set DEEPFAKE_PRECISION to the slot Triton serves (auto reads embedded plans)")
    try:
        table = read_plans(repository)
    except ValueError as error:
        return fp32(f"the plan table is unreadable ({error})")
    if table is None:
        return fp32(f"no {PLANS_FILE} in the model repository (deepfake-export --precision auto writes it)")
    runtimes = installed_runtimes() if runtime == "auto" else {runtime}
    if not BF16_INSTRUCTIONS & set(machine_facts()["instruction_sets"]):
        table.rows[:] = [row for row in table.rows if row.precision != "bf16"]  # emulated: slower than fp32
    row = servable(table, runtimes)
    if row is None:
        return fp32(f"the plan table names no plan on {', '.join(sorted(runtimes))}")
    chosen_runtime = row.runtime if runtime == "auto" else runtime
    if row.precision == "fp32":
        return ServedPlan(
            "fp32",
            chosen_runtime,
            "fp32",
            f"auto: fp32 on {row.runtime}, no published plan faster on {', '.join(sorted(runtimes))} kept"
            f" |ΔP(FAKE)| within {row.bound:g} (held-out videos: {', '.join(table.held_out)})",
        )
    return ServedPlan(row.precision, chosen_runtime, row.describe(), _reason(row, table.fp32_faces_per_s(), table))


def _reason(row: PlanRow, fp32_faces_per_s: float, table: PlanTable) -> str:
    speed = f"{row.faces_per_s / fp32_faces_per_s:.2f}x fp32's faces/s" if fp32_faces_per_s else "faster than fp32"
    return (
        f"auto: {row.describe()} on {row.runtime}, the fastest plan the export published: {speed}, max |ΔP(FAKE)|"
        f" {row.max_delta_frame:.4f} per frame and {row.max_delta_video:.4f} per video on held-out videos"
        f" ({', '.join(table.held_out)}; bound {row.bound:g}); speed measured at export on"
        f" {table.machine.get('processor', 'an unknown processor')}"
    )
