"""Write the two serving halves as ONNX (and optionally TorchScript) files, atomically.

Uses the TorchScript-based exporter (``dynamo=False``): the dynamo exporter silently freezes a
Reshape in the LSTM graphs to the example's batch size (NOTES.md), producing wrong outputs with no
warning. The parity check in ``parity.py`` guards whichever exporter is used.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch

from export.architectures import Backbone, TemporalHead
from export.checkpoint import LoadedModel
from model_contract import BACKBONE_INPUT, BACKBONE_OUTPUT, FEATURE_DIM, TEMPORAL_INPUT, TEMPORAL_OUTPUTS

DEFAULT_OPSET = 17


@contextmanager
def atomic_path(final_path: Path) -> Iterator[Path]:
    """A temporary path beside ``final_path``, renamed onto it only if the block succeeds.

    A live Triton polling the repository therefore sees the old file or the new one, never half.
    """
    final_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{final_path.name}.", suffix=".partial", dir=final_path.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        # mkstemp made it 0600: a server running as another user (Triton's, the service image's
        # user 10001) must be able to read what is published.
        umask = os.umask(0)
        os.umask(umask)
        temporary_path.chmod(0o666 & ~umask)
        os.replace(temporary_path, final_path)
    finally:
        temporary_path.unlink(missing_ok=True)


def write_text_atomically(path: Path, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text)


def _export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: Path,
    input_name: str,
    output_names: tuple[str, ...],
    dynamic_axes: dict,
    opset: int,
    model: LoadedModel,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=list(output_names),
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, model.export_metadata())
    proto.doc_string = "UNTRAINED DEMO WEIGHTS - verdicts are meaningless" if model.is_demo else "deepfake detector"
    onnx.save(proto, str(path))
    onnx.checker.check_model(str(path))


def backbone_example(model: LoadedModel, batch: int = 2) -> torch.Tensor:
    size = model.input_size
    return torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8)


def temporal_example(batch: int = 2, time: int = 8) -> torch.Tensor:
    return torch.randn(batch, time, FEATURE_DIM)


def export_backbone_onnx(model: LoadedModel, path: Path, opset: int = DEFAULT_OPSET) -> None:
    axes = {BACKBONE_INPUT: {0: "batch"}, BACKBONE_OUTPUT: {0: "batch"}}
    _export_onnx(
        Backbone(model.detector, model.preprocessing).eval(),
        backbone_example(model),
        path,
        BACKBONE_INPUT,
        (BACKBONE_OUTPUT,),
        axes,
        opset,
        model,
    )


def export_temporal_onnx(model: LoadedModel, path: Path, opset: int = DEFAULT_OPSET) -> None:
    axes = {TEMPORAL_INPUT: {0: "batch", 1: "time"}, **{name: {0: "batch"} for name in TEMPORAL_OUTPUTS}}
    _export_onnx(
        TemporalHead(model.detector).eval(),
        temporal_example(),
        path,
        TEMPORAL_INPUT,
        TEMPORAL_OUTPUTS,
        axes,
        opset,
        model,
    )


def export_torchscript(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    """Traced TorchScript; loads in a fresh process without this package (Triton's libtorch backend)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module.eval(), (example,), check_trace=False)
    torch.jit.save(traced, str(path))


def export_backbone_torchscript(model: LoadedModel, path: Path) -> None:
    export_torchscript(Backbone(model.detector, model.preprocessing), backbone_example(model), path)


def export_temporal_torchscript(model: LoadedModel, path: Path) -> None:
    export_torchscript(TemporalHead(model.detector), temporal_example(), path)
