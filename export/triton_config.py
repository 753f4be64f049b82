"""config.pbtxt for the two Triton models, written out explicitly (no auto-complete).

The configuration, not the code, says how Triton batches: the backbone takes face crops from many
requests at once (its cost is per crop, whatever video they come from), the temporal head takes
sequences of one length together (Triton batches only requests of equal shape).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from export.checkpoint import LoadedModel
from export.onnx_export import write_text_atomically
from model_contract import (
    BACKBONE_INPUT,
    BACKBONE_OUTPUT,
    FEATURE_DIM,
    LABELS_FILE,
    PRECISION,
    TEMPORAL_INPUT,
    TEMPORAL_MODEL,
    TEMPORAL_OUTPUTS,
    backbone_model_name,
)
from model_contract import DEFAULT_MAX_BATCH as MAX_BATCH_SIZE
from model_contract.precision_plans import PRECISION_PLAN

CPU_CONFIG_NAME = "cpu"  # tritonserver --model-config-name=cpu picks configs/cpu.pbtxt
# Alternatives every model gets, picked the same way (--model-config-name=NAME):
OPENVINO_CONFIG_NAME = "cpu-openvino"  # Triton's OpenVINO backend (CPU), fp32 arithmetic unless bf16
ORT_OPENVINO_CONFIG_NAME = "cpu-ort-openvino"  # ONNX Runtime backend with the OpenVINO accelerator
TENSORRT_CONFIG_NAME = "gpu-tensorrt"  # ONNX Runtime backend with the TensorRT FP16 accelerator
TENSORRT_CACHE = "/tmp/deepfake-trt-cache"  # engines built once per GPU model and batch profile


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


ModelConfig = Any  # model_config_pb2.ModelConfig: generated protobuf code ships no type stubs
KINDS = {
    "KIND_GPU": model_config_pb2.ModelInstanceGroup.KIND_GPU,
    "KIND_CPU": model_config_pb2.ModelInstanceGroup.KIND_CPU,
}


def _common(
    model: LoadedModel, name: str, platform: Platform, kind: str, precision: str = "fp32", plan: str | None = None
) -> ModelConfig:
    config = model_config_pb2.ModelConfig(
        name=f"{name}{platform.suffix}", platform=platform.name, max_batch_size=MAX_BATCH_SIZE
    )
    gpu = kind == "KIND_GPU" or kind.startswith("gpu")
    config.instance_group.add(count=1, kind=KINDS["KIND_GPU" if gpu else "KIND_CPU"])
    for key, value in {**model.export_metadata(), PRECISION: precision}.items():
        config.parameters[key].string_value = value
    if plan is not None:  # the precision plan --precision auto published here (model_contract.precision_plans)
        config.parameters[PRECISION_PLAN].string_value = plan
    return config


def _on_openvino(config: ModelConfig, precision: str) -> None:
    """Triton's OpenVINO backend reads the ONNX file itself; one stream, all cores on one batch."""
    config.ClearField("platform")
    config.backend = "openvino"
    config.default_model_filename = ONNX.model_file
    del config.instance_group[:]
    config.instance_group.add(count=1, kind=model_config_pb2.ModelInstanceGroup.KIND_CPU)
    config.parameters["PERFORMANCE_HINT"].string_value = "LATENCY"
    config.parameters["NUM_STREAMS"].string_value = "1"
    if precision == "bf16":
        config.parameters["HINT_BF16"].string_value = "YES"


def _with_accelerator(config: ModelConfig, name: str, parameters: dict[str, str], gpu: bool) -> None:
    accelerators = config.optimization.execution_accelerators
    accelerator = (accelerators.gpu_execution_accelerator if gpu else accelerators.cpu_execution_accelerator).add(
        name=name
    )
    for key, value in parameters.items():
        accelerator.parameters[key] = value


def _warmup(config: ModelConfig, name: str, tensor: str, data_type: int, dims: list[int]) -> None:
    warmup = config.model_warmup.add(name=name, batch_size=1)
    warmup.inputs[tensor].CopyFrom(model_config_pb2.ModelWarmup.Input(data_type=data_type, dims=dims, zero_data=True))


def _text(header: str, config: ModelConfig) -> str:
    return header + text_format.MessageToString(config)


PREFERRED_BATCHES = (16, 32, MAX_BATCH_SIZE)


def backbone_config(
    model: LoadedModel, kind: str, platform: Platform = ONNX, precision: str = "fp32", plan: str | None = None
) -> str:
    size, profile = model.input_size, model.preprocessing
    config = _common(model, backbone_model_name(precision), platform, kind, precision, plan)
    config.input.add(name=BACKBONE_INPUT, data_type=model_config_pb2.TYPE_UINT8, dims=[size, size, 3])
    config.output.add(name=platform.output_names[0], data_type=model_config_pb2.TYPE_FP32, dims=[FEATURE_DIM])
    config.dynamic_batching.preferred_batch_size.extend(PREFERRED_BATCHES)
    config.dynamic_batching.max_queue_delay_microseconds = 2000
    _warmup(config, "one_face", BACKBONE_INPUT, model_config_pb2.TYPE_UINT8, [size, size, 3])
    variant = ""
    if kind == OPENVINO_CONFIG_NAME or precision == "bf16":
        _on_openvino(config, precision)
        variant = f"# Runs on Triton's OpenVINO backend{' in bf16 (HINT_BF16)' if precision == 'bf16' else ''}.\n"
    elif kind == ORT_OPENVINO_CONFIG_NAME:
        _with_accelerator(config, "openvino", {}, gpu=False)
        variant = "# ONNX Runtime backend with the OpenVINO execution accelerator.\n"
    elif kind == TENSORRT_CONFIG_NAME:
        _with_accelerator(
            config,
            "tensorrt",
            {
                "precision_mode": "FP16",
                "max_workspace_size_bytes": str(4 << 30),
                "trt_engine_cache_enable": "1",
                "trt_engine_cache_path": TENSORRT_CACHE,
            },
            gpu=True,
        )
        for batch in PREFERRED_BATCHES:  # engines for these shapes are built before traffic, not on it
            warmup = config.model_warmup.add(name=f"batch_{batch}", batch_size=batch)
            warmup.inputs[BACKBONE_INPUT].CopyFrom(
                model_config_pb2.ModelWarmup.Input(
                    data_type=model_config_pb2.TYPE_UINT8, dims=[size, size, 3], random_data=True
                )
            )
        variant = "# GPU, ONNX Runtime with the TensorRT FP16 accelerator; engines cached and built at warm-up.\n"
    return _text(
        variant
        + f"""# Backbone precision: {precision}.
# Crops (uint8 RGB, already resized to {size}x{size}) -> ResNeXt50 features. Preprocessing profile
# "{profile.name}": the client cuts ({profile.crop}) and resizes ({profile.resize}); channel order
# ({profile.channel_order}), scaling and normalisation ({profile.normalisation}) happen inside the model.
# One video sends all its crops (30 by default) in one request; crops of several videos are
# stacked into one backbone pass. The short queue delay only matters when requests arrive together.
# Written by deepfake-export from model_config_pb2.ModelConfig.
""",
        config,
    )


def temporal_config(model: LoadedModel, kind: str, platform: Platform = ONNX) -> str:
    probabilities, logits = platform.output_names[1:]
    config = _common(model, TEMPORAL_MODEL, platform, kind)
    if kind == OPENVINO_CONFIG_NAME:
        _on_openvino(config, "fp32")
    elif kind == ORT_OPENVINO_CONFIG_NAME:
        _with_accelerator(config, "openvino", {}, gpu=False)
    # gpu-tensorrt: the head is a few MFLOP and its time axis varies, so it stays on plain CUDA
    config.input.add(name=TEMPORAL_INPUT, data_type=model_config_pb2.TYPE_FP32, dims=[-1, FEATURE_DIM])
    config.output.add(name=probabilities, data_type=model_config_pb2.TYPE_FP32, dims=[2], label_filename=LABELS_FILE)
    config.output.add(name=logits, data_type=model_config_pb2.TYPE_FP32, dims=[2])
    config.dynamic_batching.max_queue_delay_microseconds = 500
    _warmup(config, "eight_frames", TEMPORAL_INPUT, model_config_pb2.TYPE_FP32, [8, FEATURE_DIM])
    longest = f"time <= {model.max_time}" if model.max_time else "any time length"
    return _text(
        f"""# A sequence of backbone features ({longest}) -> [FAKE, REAL] probabilities.
# Per-frame scores are the same model over one-frame sequences, sent as one batch.
# Triton stacks only requests whose time length is equal; the head is cheap, so wait little.
# Written by deepfake-export from model_config_pb2.ModelConfig.
""",
        config,
    )


def write_configs(model_dir: Path, text_for_kind: Callable[[str], str], alternatives: bool = True) -> None:
    """``config.pbtxt`` (GPU, plain CUDA), ``configs/cpu.pbtxt``, and, for ONNX models, the
    alternatives ``configs/{cpu-openvino,cpu-ort-openvino,gpu-tensorrt}.pbtxt``."""
    write_text_atomically(model_dir / "config.pbtxt", text_for_kind("KIND_GPU"))
    write_text_atomically(model_dir / "configs" / f"{CPU_CONFIG_NAME}.pbtxt", text_for_kind("KIND_CPU"))
    if alternatives:
        for name in (OPENVINO_CONFIG_NAME, ORT_OPENVINO_CONFIG_NAME, TENSORRT_CONFIG_NAME):
            write_text_atomically(model_dir / "configs" / f"{name}.pbtxt", text_for_kind(name))
