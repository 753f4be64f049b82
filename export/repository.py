"""Lay out a Triton model repository from a loaded model: files, configs, labels, parity.

Model files are exported to temporary names, parity-checked there, and only then renamed into
place, so a failed export never replaces a good model and a live Triton never reads half a file.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from export import onnx_export, parity
from export.calibration import CalibrationSet
from export.checkpoint import LoadedModel
from export.onnx_export import DEFAULT_OPSET, atomic_path, write_text_atomically
from export.plan_search import Quantize, search_plans
from export.precision import DEFAULT_MAX_DELTA, PrecisionRow, export_precisions
from export.triton_config import ONNX, TORCHSCRIPT, Platform, backbone_config, temporal_config, write_configs
from model_contract import BACKBONE_MODEL, LABELS, LABELS_FILE, TEMPORAL_MODEL, backbone_model_name
from model_contract.precision_plans import PlanRow, PlanTable, write_plans

REDUCED = ("bf16", "int8")  # the backbone slots beside fp32 (deepfake_backbone_<precision>)

Progress = Callable[[str], None]


def model_file(repository: Path, model_name: str, platform: Platform, version: int) -> Path:
    return repository / f"{model_name}{platform.suffix}" / str(version) / platform.model_file


def export_repository(
    model: LoadedModel,
    repository: Path,
    version: int = 1,
    opset: int = DEFAULT_OPSET,
    torchscript: bool = False,
    progress: Progress = lambda message: None,
) -> list[parity.ParityRow]:
    """Export, check parity, then publish; raises ``parity.ParityError`` and leaves the old files."""
    platforms = [ONNX, TORCHSCRIPT] if torchscript else [ONNX]
    with ExitStack() as publish:
        runners = {}
        for platform in platforms:
            backbone_path = publish.enter_context(
                atomic_path(model_file(repository, BACKBONE_MODEL, platform, version))
            )
            temporal_path = publish.enter_context(
                atomic_path(model_file(repository, TEMPORAL_MODEL, platform, version))
            )
            if platform is ONNX:
                _step(
                    progress,
                    "exporting backbone to ONNX",
                    partial(onnx_export.export_backbone_onnx, model, backbone_path, opset),
                )
                _step(
                    progress,
                    "exporting temporal head to ONNX",
                    partial(onnx_export.export_temporal_onnx, model, temporal_path, opset),
                )
                runners["onnxruntime"] = parity.onnx_runners(backbone_path, temporal_path)
            else:
                _step(
                    progress,
                    "tracing backbone to TorchScript",
                    partial(onnx_export.export_backbone_torchscript, model, backbone_path),
                )
                _step(
                    progress,
                    "tracing temporal head to TorchScript",
                    partial(onnx_export.export_temporal_torchscript, model, temporal_path),
                )
                runners["torchscript"] = parity.torchscript_runners(backbone_path, temporal_path)
        rows = _step(progress, "checking parity against PyTorch", lambda: parity.check_parity(model, runners))
        parity.require_parity(rows)  # raising here discards the temporaries: nothing is published
    for platform in platforms:
        write_model_configs(model, repository, platform)
    return rows


def write_model_configs(model: LoadedModel, repository: Path, platform: Platform = ONNX) -> None:
    backbone_dir = repository / f"{BACKBONE_MODEL}{platform.suffix}"
    temporal_dir = repository / f"{TEMPORAL_MODEL}{platform.suffix}"
    alternatives = platform is ONNX
    write_configs(backbone_dir, lambda kind: backbone_config(model, kind, platform), alternatives)
    write_configs(temporal_dir, lambda kind: temporal_config(model, kind, platform), alternatives)
    write_text_atomically(temporal_dir / LABELS_FILE, "\n".join(LABELS) + "\n")


def export_reduced_precisions(
    model: LoadedModel,
    repository: Path,
    precisions: list[str],
    calibration: CalibrationSet,
    version: int = 1,
    bound: float = DEFAULT_MAX_DELTA,
    progress: Progress = lambda message: None,
) -> list[PrecisionRow]:
    """bf16 / int8 backbones beside the published fp32 one; raises PrecisionParityError, publishing none."""
    reduced = [precision for precision in precisions if precision != "fp32"]
    if not reduced:
        return []
    finals = {precision: model_file(repository, backbone_model_name(precision), ONNX, version) for precision in reduced}
    try:
        rows = export_precisions(
            model,
            model_file(repository, BACKBONE_MODEL, ONNX, version),
            model_file(repository, TEMPORAL_MODEL, ONNX, version),
            reduced,
            calibration,
            finals,
            bound,
            progress,
        )
    except BaseException:
        for final in finals.values():  # a model folder without a model would fail a strict Triton's start
            for folder in (final.parent, final.parent.parent):
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
        raise
    for precision in reduced:
        write_configs(repository / backbone_model_name(precision), partial(_precision_config, model, precision))
    return rows


def _precision_config(model: LoadedModel, precision: str, kind: str, plan: str | None = None) -> str:
    return backbone_config(model, kind, ONNX, precision, plan)


def export_auto(
    model: LoadedModel,
    repository: Path,
    calibration: CalibrationSet,
    version: int = 1,
    bound: float = DEFAULT_MAX_DELTA,
    progress: Progress = lambda message: None,
    quantize: Quantize | None = None,
    runtimes: tuple[str, ...] | None = None,
) -> PlanTable:
    """``--precision auto``: every plan measured, the fastest within the bound per slot published
    with its configs, the table written to ``precision_plans.json`` for the service's auto.

    The reduced slots go first (they belong to the checkpoint the fp32 export just replaced); each
    published slot is built whole in a hidden folder beside it (model and configs) and renamed into
    place, so a live Triton and a failed search see a slot complete or absent, never half."""
    for precision in REDUCED:
        _remove_folder(repository / backbone_model_name(precision))

    def publish(precision: str, source: Path, row: PlanRow) -> None:
        name = backbone_model_name(precision)
        staging = repository / f".{name}.partial"
        _remove_folder(staging)
        try:
            model_path = model_file(staging, name, ONNX, version)
            staging_slot = model_path.parent.parent
            model_path.parent.mkdir(parents=True)
            shutil.copyfile(source, model_path)
            plan = row.describe() if not row.kept else f"{row.describe()}: {', '.join(row.kept)}"
            write_configs(staging_slot, partial(_precision_config, model, precision, plan=plan))
            staging_slot.chmod(0o755)
            staging_slot.rename(repository / name)
        finally:
            _remove_folder(staging)

    table = search_plans(
        model,
        REDUCED,
        publish,
        model_file(repository, BACKBONE_MODEL, ONNX, version),
        model_file(repository, TEMPORAL_MODEL, ONNX, version),
        calibration,
        bound,
        progress,
        quantize,
        runtimes,
    )
    write_plans(repository, table)
    return table


def _remove_folder(folder: Path) -> None:
    if folder.is_dir():
        shutil.rmtree(folder)


def _step(progress: Progress, what: str, action: Callable):
    progress(f"{what} …")
    started = time.perf_counter()
    result = action()
    progress(f"{what}: done in {time.perf_counter() - started:.1f} s")
    return result
