"""``--precision auto``: measure every precision plan for this checkpoint, publish the fastest that
keeps P(FAKE) within the bound, and write the whole table beside the models.

The plans: fp32; bf16 (OpenVINO); int8 (NNCF, QDQ); and mixed int8, where the residual blocks
whose int8 moves P(FAKE) most stay at fp32. Blocks are ranked on the calibration videos' crops
(never the held-out ones): each block alone put back to fp32, the mean |ΔP(FAKE)| per frame left.
The mixed candidates keep the top 1, 2, 4 … blocks until the calibration videos are within the
bound. Every candidate, on every runtime that may serve it, is then measured twice: on the held-out
videos (max |ΔP(FAKE)| per frame and per video against fp32 on ONNX Runtime) and for speed (faces/s
at the service's batch, median of repeats). Only rows within the bound on the held-out videos can
be published; in each model slot (bf16, int8) the fastest such candidate is, and a slot with none
is removed so that no stale model outlives the table.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from export.calibration import CalibrationSet
from export.checkpoint import LoadedModel
from export.mixed_int8 import quantized_blocks, revert_to_fp32
from export.precision import (
    DEFAULT_MAX_DELTA,
    Features,
    PrecisionRow,
    _save_with_metadata,
    check_precision,
    features_runner,
)
from model_contract import PRECISION, TEMPORAL_INPUT, TEMPORAL_OUTPUTS
from model_contract.precision_plans import PRECISION_PLAN, PlanRow, PlanTable

SPEED_BATCH = 30  # crops per backbone call: one video's distinct faces, as the service batches them
SPEED_REPEATS = 5
RANKING_CROPS_PER_VIDEO = 6  # the block ranking's subset: enough to order blocks, a second per block
MAX_KEPT_FRACTION = 0.5  # beyond half the blocks at fp32 a mixed plan is no faster than fp32 here

Quantize = Callable[[Path, Path, np.ndarray, dict[str, str]], None]
Progress = Callable[[str], None]


@dataclass
class Candidate:
    plan: str
    precision: str
    path: Path
    runtimes: tuple[str, ...]
    kept: tuple[str, ...] = ()
    blocks: int = 0


def available_runtimes() -> tuple[str, ...]:
    try:
        import openvino  # noqa: F401
    except ImportError:
        return ("onnxruntime",)
    return ("onnxruntime", "openvino")


def faces_per_second(run: Features, crops: np.ndarray) -> float:
    batch = np.ascontiguousarray(crops[:SPEED_BATCH])
    run(batch)  # warm-up: first-call allocations and kernel choices
    seconds = []
    for _ in range(SPEED_REPEATS):
        started = time.perf_counter()
        run(batch)
        seconds.append(time.perf_counter() - started)
    return len(batch) / statistics.median(seconds)


class PlanSearch:
    """One search: the fp32 reference, the temporal head, the calibration split, a scratch folder."""

    def __init__(
        self,
        model: LoadedModel,
        fp32_backbone: Path,
        temporal_path: Path,
        calibration: CalibrationSet,
        scratch: Path,
        bound: float = DEFAULT_MAX_DELTA,
        runtimes: tuple[str, ...] | None = None,
        progress: Progress = lambda message: None,
    ) -> None:
        from preprocess_service.inference.runtimes import open_model

        self.model, self.fp32_backbone, self.calibration, self.scratch = model, fp32_backbone, calibration, scratch
        self.bound, self.progress = bound, progress
        self.runtimes = runtimes or available_runtimes()
        temporal_model = open_model(temporal_path, "onnxruntime")
        self.temporal = lambda features: temporal_model.run(TEMPORAL_OUTPUTS[0], {TEMPORAL_INPUT: features})
        self.reference = features_runner(fp32_backbone, "onnxruntime", "fp32")
        self.metadata = model.export_metadata()

    def frame_p_fake(self, features: np.ndarray) -> np.ndarray:
        return self.temporal(np.ascontiguousarray(features[:, None, :], np.float32))[:, 0]

    # ----- candidates
    def candidates(self, quantize: Quantize) -> list[Candidate]:
        from export.precision import write_bf16

        found = [Candidate("fp32", "fp32", self.fp32_backbone, self.runtimes)]
        if "openvino" in self.runtimes:
            bf16 = self.scratch / "bf16.onnx"
            write_bf16(self.fp32_backbone, bf16, self._metadata("bf16", "bf16"))
            found.append(Candidate("bf16", "bf16", bf16, ("openvino",)))
        int8 = self.scratch / "int8.onnx"
        self.progress(f"quantising to int8 on {len(self.calibration.calibration_crops)} face crops …")
        quantize(self.fp32_backbone, int8, self.calibration.calibration_crops, self._metadata("int8", "int8"))
        found.append(Candidate("int8", "int8", int8, self.runtimes))
        found += self.mixed_candidates(int8)
        return found

    def _metadata(self, precision: str, plan: str) -> dict[str, str]:
        return {**self.metadata, PRECISION: precision, PRECISION_PLAN: plan}

    def _calibration_error(self, run: Features, crops: list[np.ndarray], reference: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.abs(self.frame_p_fake(run(c)) - r) for c, r in zip(crops, reference, strict=True)])

    def _runners(self, path: Path, precision: str, runtimes: tuple[str, ...]) -> dict[str, Features]:
        return {runtime: features_runner(path, runtime, precision) for runtime in runtimes}

    def _check(self, plan: str, runners: dict[str, Features], videos: list[np.ndarray]) -> list[PrecisionRow]:
        """check_precision's rows (per runtime, per frame and per video) for ``videos`` against fp32."""
        return check_precision(plan, runners, self.reference, self.temporal, videos, self.bound, self.model.max_time)

    def calibration_worst(self, path: Path, precision: str = "int8") -> float:
        """Max |ΔP(FAKE)| per frame or per video on the calibration videos, over every runtime: the
        rule that picks candidates (measure() applies it again to every candidate)."""
        rows = self._check(precision, self._runners(path, precision, self.runtimes), self.calibration.calibration)
        return max(row.max_abs_diff for row in rows)

    def mixed_candidates(self, int8_path: Path) -> list[Candidate]:
        """Rank blocks on the calibration crops; keep the top 1, 2, 4 … at fp32 until within the bound."""
        int8_error = self.calibration_worst(int8_path)
        if int8_error <= self.bound:
            self.progress(f"int8: max |ΔP| {int8_error:.4f} on the calibration videos, within the bound: no mixing")
            return []
        int8, fp32 = onnx.load(str(int8_path)), onnx.load(str(self.fp32_backbone))
        blocks = list(quantized_blocks(int8))
        subset = [crops[:: max(1, len(crops) // RANKING_CROPS_PER_VIDEO)] for crops in self.calibration.calibration]
        reference = [self.frame_p_fake(self.reference(crops)) for crops in subset]
        whole = self._calibration_error(features_runner(int8_path, "onnxruntime", "int8"), subset, reference)
        self.progress(
            f"ranking {len(blocks)} blocks by int8 sensitivity (int8: mean |ΔP| {whole.mean():.4f} on the"
            " calibration crops) …"
        )
        left = {}
        probe = self.scratch / "probe.onnx"
        for block in blocks:
            onnx.save(revert_to_fp32(int8, fp32, {block}), str(probe))
            left[block] = float(
                self._calibration_error(features_runner(probe, "onnxruntime", "int8"), subset, reference).mean()
            )
        ranked = sorted(blocks, key=lambda block: left[block])  # least error left when it alone is fp32: first
        found, kept_count = [], 1
        while kept_count <= max(1, int(len(blocks) * MAX_KEPT_FRACTION)):
            kept = tuple(ranked[:kept_count])
            path = self.scratch / f"int8-mixed-{kept_count}.onnx"
            plan = f"int8-mixed: {len(kept)} of {len(blocks)} blocks at fp32 ({', '.join(kept)})"
            mixed = revert_to_fp32(int8, fp32, set(kept))
            _save_with_metadata(mixed, path, self._metadata("int8", plan))
            error = self.calibration_worst(path)
            self.progress(f"int8 with {kept_count} block(s) at fp32: max |ΔP| {error:.4f} on the calibration videos")
            found.append(Candidate("int8-mixed", "int8", path, self.runtimes, kept, len(blocks)))
            if error <= self.bound:
                break
            kept_count *= 2
        return found

    # ----- measurement
    def measure(self, candidate: Candidate) -> list[PlanRow]:
        runners = self._runners(candidate.path, candidate.precision, candidate.runtimes)
        checked = self._check(candidate.plan, runners, self.calibration.held_out)
        delta = {(row.runtime, row.scope): row.max_abs_diff for row in checked}
        # what picks the candidate; the held-out rows only gate it
        on_calibration = self._check(candidate.plan, runners, self.calibration.calibration)
        calibration_delta = {runtime: 0.0 for runtime in runners}
        for row in on_calibration:
            calibration_delta[row.runtime] = max(calibration_delta[row.runtime], row.max_abs_diff)
        return [
            PlanRow(
                plan=candidate.plan,
                precision=candidate.precision,
                runtime=runtime,
                faces_per_s=round(faces_per_second(run, self.calibration.calibration_crops), 2),
                max_delta_frame=delta[runtime, "frame"],
                max_delta_video=delta[runtime, "video"],
                bound=self.bound,
                kept=candidate.kept,
                blocks=candidate.blocks,
                calibration_delta=calibration_delta[runtime],
            )
            for runtime, run in runners.items()
        ]


Publish = Callable[[str, Path, PlanRow], None]  # slot precision, the model file to publish, its fastest row


def search_plans(
    model: LoadedModel,
    slots: tuple[str, ...],
    publish: Publish,
    fp32_backbone: Path,
    temporal_path: Path,
    calibration: CalibrationSet,
    bound: float = DEFAULT_MAX_DELTA,
    progress: Progress = lambda message: None,
    quantize: Quantize | None = None,
    runtimes: tuple[str, ...] | None = None,
) -> PlanTable:
    """Measure every plan; per slot, pick the fastest candidate within the bound on the calibration
    videos on every runtime, and publish it (``publish``) only if it is within the bound on the
    held-out videos on every runtime too. The held-out videos never choose between candidates."""
    from export.precision import write_int8

    with tempfile.TemporaryDirectory(prefix="deepfake-plans-") as folder:
        search = PlanSearch(model, fp32_backbone, temporal_path, calibration, Path(folder), bound, runtimes, progress)
        measured: list[tuple[Candidate, list[PlanRow]]] = []
        for candidate in search.candidates(quantize or write_int8):
            progress(f"measuring {candidate.plan}{f' ({len(candidate.kept)} kept)' if candidate.kept else ''} …")
            measured.append((candidate, search.measure(candidate)))
        published: set[int] = {i for i, (candidate, _) in enumerate(measured) if candidate.precision == "fp32"}
        for precision in slots:
            eligible = [
                i
                for i, (candidate, rows) in enumerate(measured)
                if candidate.precision == precision and all(row.calibration_delta <= bound for row in rows)
            ]
            best = max(eligible, key=lambda i: max(row.faces_per_s for row in measured[i][1]), default=None)
            if best is None:
                progress(f"{precision}: no plan within {bound:g} on the calibration videos: not published")
                continue
            candidate, rows = measured[best]
            if not all(row.ok for row in rows):
                progress(f"{precision}: {rows[0].describe()} moves P(FAKE) beyond {bound:g} on held-out videos")
                continue
            publish(precision, candidate.path, max(rows, key=lambda row: row.faces_per_s))
            published.add(best)
    rows = [
        replace(row, published=True) if i in published else row
        for i, (_, candidate_rows) in enumerate(measured)
        for row in candidate_rows
    ]
    servable = [row for row in rows if row.published and row.ok]
    chosen = max(servable, key=lambda row: row.faces_per_s, default=None)
    from preprocess_service.machine import machine_facts

    return PlanTable(rows, chosen, list(calibration.held_out_names), machine_facts())


def format_plans(table: PlanTable) -> str:
    fp32 = table.fp32_faces_per_s() or 1.0
    header = (
        f"{'plan':<40} {'runtime':<12} {'faces/s':>8} {'vs fp32':>8} {'calibration':>11} {'held-out frame':>14}"
        f" {'video':>8}  within  published"
    )
    lines = [header, "-" * len(header)]
    for row in table.rows:
        lines.append(
            f"{row.describe():<40} {row.runtime:<12} {row.faces_per_s:>8.1f} {row.faces_per_s / fp32:>7.2f}x"
            f" {row.calibration_delta:>11.4f} {row.max_delta_frame:>14.4f} {row.max_delta_video:>8.4f}"
            f"  {'yes' if row.ok else 'NO':<6}  {'yes' if row.published else ''}"
        )
    if table.chosen is None or table.chosen.plan == "fp32":
        lines.append(
            f"chosen: fp32 (no reduced plan faster than fp32 kept |ΔP(FAKE)| ≤ {table.rows[0].bound:g} per frame"
            f" and per video on the held-out videos: {', '.join(table.held_out)})"
        )
    else:
        lines.append(
            f"chosen: {table.chosen.describe()} on {table.chosen.runtime}, {table.chosen.faces_per_s / fp32:.2f}x"
            f" fp32's faces/s, within {table.chosen.bound:g} on {', '.join(table.held_out)}"
        )
    instructions = ", ".join(table.machine.get("instruction_sets", []))
    lines.append(f"measured on {table.machine.get('processor', 'unknown')} ({instructions})")
    return "\n".join(lines)
