"""Reduced-precision backbones (bf16, int8) beside the fp32 one, each checked on held-out videos.

The backbone is ~85 % of the time per video and already runs near the CPU's fp32 peak, so more
speed needs less arithmetic per face. Each precision is its own Triton model
(``deepfake_backbone_<precision>``), so a deployment picks it by name and the fp32 model stays:

- int8: static quantisation with NNCF (OpenVINO's quantiser: per-channel weights, activation ranges
  measured on real face crops, fast bias correction), written as a QDQ ONNX file that ONNX Runtime
  and OpenVINO both run;
- bf16: the fp32 ONNX file itself, compiled by OpenVINO with ``INFERENCE_PRECISION_HINT=bf16``.

A precision is published only if, on videos the quantiser never saw, P(FAKE) moves by at most
``max_delta`` for every frame (one-frame sequences, how per-frame scores are made) and for every
whole video (the sequence verdict), against the fp32 backbone, on every runtime that may serve it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from export.calibration import CalibrationSet
from export.checkpoint import LoadedModel
from export.onnx_export import atomic_path
from model_contract import BACKBONE_INPUT, BACKBONE_OUTPUT, PRECISION, TEMPORAL_INPUT, TEMPORAL_OUTPUTS

DEFAULT_MAX_DELTA = 0.01  # max |ΔP(FAKE)| per frame and per video against fp32
RUNTIMES_CHECKED = {"bf16": ("openvino",), "int8": ("onnxruntime", "openvino")}
MAX_CALIBRATION_CROPS = 300  # NNCF's default subset: ranges stop moving well before


@dataclass(frozen=True)
class PrecisionRow:
    precision: str
    runtime: str
    scope: str  # "frame" or "video"
    count: int  # held-out frames or videos compared
    max_abs_diff: float  # max |ΔP(FAKE)| against the fp32 backbone
    bound: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.bound


class PrecisionParityError(Exception):
    """A reduced precision moves P(FAKE) beyond the bound on held-out videos; nothing was published."""


Features = Callable[[np.ndarray], np.ndarray]


def write_int8(fp32_path: Path, out_path: Path, crops: np.ndarray, metadata: dict[str, str]) -> None:
    """Static INT8 of the fp32 backbone, calibrated on ``crops`` (real faces, the service's own path)."""
    import nncf  # heavy; only an int8 export needs it

    dataset = nncf.Dataset(list(crops), lambda crop: {BACKBONE_INPUT: crop[None]})
    quantized = nncf.quantize(
        onnx.load(str(fp32_path)),
        dataset,
        subset_size=min(len(crops), MAX_CALIBRATION_CROPS),
        preset=nncf.QuantizationPreset.PERFORMANCE,
    )
    _save_with_metadata(quantized, out_path, {**metadata, PRECISION: "int8"})


def write_bf16(fp32_path: Path, out_path: Path, metadata: dict[str, str]) -> None:
    """The fp32 graph, labelled bf16: OpenVINO does the bf16 arithmetic when it compiles it."""
    _save_with_metadata(onnx.load(str(fp32_path)), out_path, {**metadata, PRECISION: "bf16"})


def _save_with_metadata(proto: onnx.ModelProto, path: Path, metadata: dict[str, str]) -> None:
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata)
    onnx.save(proto, str(path))


def features_runner(path: Path, runtime: str, precision: str) -> Features:
    from preprocess_service.inference.runtimes import open_model

    model = open_model(path, runtime, precision)
    return lambda crops: model.run(BACKBONE_OUTPUT, {BACKBONE_INPUT: crops})


def _p_fake(temporal: Callable[[np.ndarray], np.ndarray], features: np.ndarray) -> np.ndarray:
    return temporal(np.ascontiguousarray(features, np.float32))[:, 0]


def check_precision(
    precision: str,
    candidates: dict[str, Features],
    reference: Features,
    temporal: Callable[[np.ndarray], np.ndarray],
    held_out: list[np.ndarray],
    bound: float,
    max_time: int | None,
) -> list[PrecisionRow]:
    """Rows per runtime: every held-out frame, and every held-out video's whole sequence."""
    reference_features = [reference(crops) for crops in held_out]
    longest = max_time or max(len(crops) for crops in held_out)

    def scores(features_per_video: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        frames = np.concatenate([_p_fake(temporal, f[:, None, :]) for f in features_per_video])
        videos = np.array([_p_fake(temporal, f[None, :longest])[0] for f in features_per_video])
        return frames, videos

    reference_frames, reference_videos = scores(reference_features)
    rows = []
    for runtime, run in candidates.items():
        frames, videos = scores([run(crops) for crops in held_out])
        rows.append(
            PrecisionRow(
                precision, runtime, "frame", len(frames), float(np.abs(frames - reference_frames).max()), bound
            )
        )
        rows.append(
            PrecisionRow(
                precision, runtime, "video", len(videos), float(np.abs(videos - reference_videos).max()), bound
            )
        )
    return rows


def export_precisions(
    model: LoadedModel,
    fp32_backbone: Path,
    temporal_path: Path,
    precisions: list[str],
    calibration: CalibrationSet,
    final_paths: dict[str, Path],
    bound: float = DEFAULT_MAX_DELTA,
    progress: Callable[[str], None] = lambda message: None,
) -> list[PrecisionRow]:
    """Write, check, then publish each precision; raises PrecisionParityError and publishes none."""
    from preprocess_service.inference.runtimes import open_model

    temporal_model = open_model(temporal_path, "onnxruntime")

    def temporal(features: np.ndarray) -> np.ndarray:
        return temporal_model.run(TEMPORAL_OUTPUTS[0], {TEMPORAL_INPUT: features})

    reference = features_runner(fp32_backbone, "onnxruntime", "fp32")
    metadata = model.export_metadata()
    rows: list[PrecisionRow] = []
    with ExitStack() as publish:  # a failure below leaves every final path as it was
        temporaries = {
            precision: publish.enter_context(atomic_path(final_paths[precision])) for precision in precisions
        }
        for precision in precisions:
            path = temporaries[precision]
            if precision == "int8":
                progress(f"quantising to int8 on {len(calibration.calibration_crops)} face crops …")
                write_int8(fp32_backbone, path, calibration.calibration_crops, metadata)
            else:
                write_bf16(fp32_backbone, path, metadata)
            progress(f"checking {precision} on {len(calibration.held_out)} held-out video(s) …")
            candidates = {runtime: features_runner(path, runtime, precision) for runtime in RUNTIMES_CHECKED[precision]}
            rows += check_precision(
                precision, candidates, reference, temporal, calibration.held_out, bound, model.max_time
            )
        failures = [row for row in rows if not row.ok]
        if failures:
            worst = max(failures, key=lambda row: row.max_abs_diff)
            raise PrecisionParityError(
                f"{worst.precision} on {worst.runtime} moves P(FAKE) by up to {worst.max_abs_diff:.4f} per"
                f" {worst.scope} on held-out videos ({', '.join(calibration.held_out_names)}), above {bound:g}:"
                " not published. Calibrate on more videos like the ones you serve, or accept a looser"
                " bound knowingly with --max-delta"
            )
    return rows


def format_rows(rows: list[PrecisionRow]) -> str:
    header = f"{'precision':<9} {'runtime':<12} {'per':<6} {'held out':>8} {'max |ΔP(FAKE)| vs fp32':>24}  ok"
    lines = [header, "-" * len(header)]
    lines += [
        f"{r.precision:<9} {r.runtime:<12} {r.scope:<6} {r.count:>8} {r.max_abs_diff:>24.2e}  {'yes' if r.ok else 'NO'}"
        for r in rows
    ]
    return "\n".join(lines)
