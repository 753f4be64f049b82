"""Numerical parity of the exported halves, composed, against the PyTorch model.

The composition checked is the one serving runs: exported backbone on uint8 crops, its features
gathered into clips, exported temporal head on the clips. The reference is the PyTorch model on
the same crops, normalised as SEED_MODEL.md says, each clip run alone at batch 1 as the original
ran it. The trunk is frame-independent in eval mode, so the reference computes its features once
per distinct crop of a small pool and clips index into that pool; one clip also goes through the
unsplit ``forward`` literally, so the split itself is checked, not assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from export.architectures import normalise, pooled_features, trunk_of
from export.checkpoint import LoadedModel
from model_contract import BACKBONE_INPUT, BACKBONE_OUTPUT, TEMPORAL_INPUT, TEMPORAL_OUTPUTS

TOLERANCE = 1e-4
BATCHES = (1, 3)
TIMES = (1, 8, 30, 200)  # capped at the model's own maximum time
POOL_SIZE = 12

Runner = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ParityRow:
    runtime: str
    batch: int
    time: int
    max_abs_diff: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= TOLERANCE


class ParityError(Exception):
    """An exported model whose outputs differ from PyTorch beyond the tolerance."""


def onnx_runners(backbone_path: Path, temporal_path: Path) -> tuple[Runner, Runner]:
    backbone = onnxruntime.InferenceSession(str(backbone_path), providers=["CPUExecutionProvider"])
    temporal = onnxruntime.InferenceSession(str(temporal_path), providers=["CPUExecutionProvider"])
    return (
        lambda faces: backbone.run([BACKBONE_OUTPUT], {BACKBONE_INPUT: faces})[0],
        lambda features: temporal.run([TEMPORAL_OUTPUTS[0]], {TEMPORAL_INPUT: features})[0],
    )


def torchscript_runners(backbone_path: Path, temporal_path: Path) -> tuple[Runner, Runner]:
    backbone, temporal = torch.jit.load(str(backbone_path)), torch.jit.load(str(temporal_path))

    def run_backbone(faces: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return backbone(torch.from_numpy(faces)).numpy()

    def run_temporal(features: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return temporal(torch.from_numpy(features))[0].numpy()

    return run_backbone, run_temporal


def _reference_probabilities(model: LoadedModel, clips: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([torch.softmax(model.detector.original_head(clip[None]), -1).numpy() for clip in clips])


def times_to_check(model: LoadedModel) -> list[int]:
    longest = model.max_time or max(TIMES)
    return sorted({min(time, longest) for time in TIMES})


def check_parity(model: LoadedModel, runners: dict[str, tuple[Runner, Runner]], seed: int = 0) -> list[ParityRow]:
    """One row per runtime x (batch, time), plus the literal unsplit forward; raises nothing."""
    rng = np.random.default_rng(seed)
    size = model.input_size
    pool = rng.integers(0, 256, (POOL_SIZE, size, size, 3), dtype=np.uint8)
    with torch.no_grad():
        reference_features = pooled_features(
            trunk_of(model.detector), normalise(torch.from_numpy(pool), model.preprocessing)[None]
        )[0]
        literal_clip = torch.arange(8) % POOL_SIZE
        literal = torch.softmax(
            model.detector(normalise(torch.from_numpy(pool[literal_clip.numpy()]), model.preprocessing)[None]), -1
        )

    rows = []
    for runtime, (run_backbone, run_temporal) in runners.items():
        exported_features = run_backbone(pool)
        composed = run_temporal(exported_features[literal_clip.numpy()][None])
        rows.append(ParityRow(f"{runtime} (unsplit forward)", 1, 8, float(np.abs(composed - literal.numpy()).max())))
        for batch in BATCHES:
            for time in times_to_check(model):
                index = rng.integers(0, POOL_SIZE, (batch, time))
                expected = _reference_probabilities(model, reference_features[torch.from_numpy(index)])
                actual = run_temporal(np.ascontiguousarray(exported_features[index]))
                rows.append(ParityRow(runtime, batch, time, float(np.abs(actual - expected).max())))
    return rows


def format_table(rows: list[ParityRow]) -> str:
    header = f"{'runtime':<32} {'batch':>5} {'time':>5} {'max |Δ probability|':>20}  ok"
    lines = [header, "-" * len(header)]
    lines += [
        f"{r.runtime:<32} {r.batch:>5} {r.time:>5} {r.max_abs_diff:>20.2e}  {'yes' if r.ok else 'NO'}" for r in rows
    ]
    return "\n".join(lines)


def require_parity(rows: list[ParityRow]) -> None:
    failures = [row for row in rows if not row.ok]
    if failures:
        worst = max(failures, key=lambda row: row.max_abs_diff)
        raise ParityError(
            f"parity check failed: {len(failures)} of {len(rows)} cases exceed {TOLERANCE:g}"
            f" (worst {worst.max_abs_diff:.2e} for {worst.runtime}, batch {worst.batch}, time {worst.time})"
        )
