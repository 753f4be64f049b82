"""config.pbtxt for the two Triton models, written out explicitly (no auto-complete).

The configuration, not the code, says how Triton batches: the backbone takes face crops from many
requests at once (its cost is per crop, whatever video they come from), the temporal head takes
sequences of one length together (Triton batches only requests of equal shape).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from export.checkpoint import LoadedModel
from export.onnx_export import write_text_atomically
from model_contract import (
    BACKBONE_INPUT,
    BACKBONE_MODEL,
    BACKBONE_OUTPUT,
    FEATURE_DIM,
    LABELS_FILE,
    TEMPORAL_INPUT,
    TEMPORAL_MODEL,
    TEMPORAL_OUTPUTS,
)
from model_contract import DEFAULT_MAX_BATCH as MAX_BATCH_SIZE

CPU_CONFIG_NAME = "cpu"  # tritonserver --model-config-name=cpu picks configs/cpu.pbtxt


@dataclass(frozen=True)
class Platform:
    name: str  # Triton's platform string
    model_file: str
    suffix: str  # appended to the model name
    output_names: tuple[str, ...]  # backbone output, then temporal outputs


ONNX = Platform("onnxruntime_onnx", "model.onnx", "", (BACKBONE_OUTPUT, *TEMPORAL_OUTPUTS))
# Triton's libtorch backend names outputs <name>__<index>; inputs may keep forward()'s argument names.
TORCHSCRIPT = Platform(
    "pytorch_libtorch",
    "model.pt",
    "_libtorch",
    (f"{BACKBONE_OUTPUT}__0", f"{TEMPORAL_OUTPUTS[0]}__0", f"{TEMPORAL_OUTPUTS[1]}__1"),
)


def _parameters(model: LoadedModel) -> str:
    values = model.export_metadata()
    return "\n".join(
        f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}' for key, value in values.items()
    )


def _instance_group(kind: str) -> str:
    return f"instance_group [ {{ count: 1 kind: {kind} }} ]"


def backbone_config(model: LoadedModel, kind: str, platform: Platform = ONNX) -> str:
    size = model.input_size
    profile = model.preprocessing
    return f'''# Crops (uint8 RGB, already resized to {size}x{size}) -> ResNeXt50 features. Preprocessing profile
# "{profile.name}": the client cuts ({profile.crop}) and resizes ({profile.resize}); channel order
# ({profile.channel_order}), scaling and normalisation ({profile.normalisation}) happen inside the model.
name: "{BACKBONE_MODEL}{platform.suffix}"
platform: "{platform.name}"
max_batch_size: {MAX_BATCH_SIZE}
input [
  {{ name: "{BACKBONE_INPUT}" data_type: TYPE_UINT8 dims: [ {size}, {size}, 3 ] }}
]
output [
  {{ name: "{platform.output_names[0]}" data_type: TYPE_FP32 dims: [ {FEATURE_DIM} ] }}
]
# One video sends all its crops (30 by default) in one request; crops of several videos are
# stacked into one backbone pass. The short delay only matters when requests arrive together.
dynamic_batching {{
  preferred_batch_size: [ 16, 32, {MAX_BATCH_SIZE} ]
  max_queue_delay_microseconds: 2000
}}
{_instance_group(kind)}
model_warmup [
  {{
    name: "one_face"
    batch_size: 1
    inputs {{ key: "{BACKBONE_INPUT}" value {{ data_type: TYPE_UINT8 dims: [ {size}, {size}, 3 ] zero_data: true }} }}
  }}
]
{_parameters(model)}
'''


def temporal_config(model: LoadedModel, kind: str, platform: Platform = ONNX) -> str:
    probabilities, logits = platform.output_names[1:]
    longest = f"time <= {model.max_time}" if model.max_time else "any time length"
    return f'''# A sequence of backbone features ({longest}) -> [FAKE, REAL] probabilities.
# Per-frame scores are the same model over one-frame sequences, sent as one batch.
name: "{TEMPORAL_MODEL}{platform.suffix}"
platform: "{platform.name}"
max_batch_size: {MAX_BATCH_SIZE}
input [
  {{ name: "{TEMPORAL_INPUT}" data_type: TYPE_FP32 dims: [ -1, {FEATURE_DIM} ] }}
]
output [
  {{ name: "{probabilities}" data_type: TYPE_FP32 dims: [ 2 ] label_filename: "{LABELS_FILE}" }},
  {{ name: "{logits}" data_type: TYPE_FP32 dims: [ 2 ] }}
]
# Triton stacks only requests whose time length is equal; the head is cheap, so wait little.
dynamic_batching {{
  max_queue_delay_microseconds: 500
}}
{_instance_group(kind)}
model_warmup [
  {{
    name: "eight_frames"
    batch_size: 1
    inputs {{ key: "{TEMPORAL_INPUT}" value {{ data_type: TYPE_FP32 dims: [ 8, {FEATURE_DIM} ] zero_data: true }} }}
  }}
]
{_parameters(model)}
'''


def write_configs(model_dir: Path, text_for_kind: Callable[[str], str]) -> None:
    """``config.pbtxt`` for GPU hosts and ``configs/cpu.pbtxt`` for CPU-only ones."""
    write_text_atomically(model_dir / "config.pbtxt", text_for_kind("KIND_GPU"))
    write_text_atomically(model_dir / "configs" / f"{CPU_CONFIG_NAME}.pbtxt", text_for_kind("KIND_CPU"))
