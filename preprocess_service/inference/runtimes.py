"""The in-process engines that run an exported ONNX file: ONNX Runtime or OpenVINO, one interface.

OpenVINO is here for arithmetic ONNX Runtime cannot do on a CPU: bfloat16 convolutions (AVX-512
BF16 / AMX) and faster INT8 kernels for the same QDQ files. Each model is compiled once, at start,
with a latency hint (the service makes one model call at a time and wants all cores on it) and an
explicit precision: OpenVINO would otherwise pick bf16 by itself on some CPUs, and an fp32 model
must never change its answers silently.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime

RUNTIMES = ("onnxruntime", "openvino")
# Which engine runs the backbone at each precision when the setting is "auto", measured side by
# side in benchmarks/model_cpu.py (README, "Benchmarks"): fp32 ties (ONNX Runtime kept: faster for
# the temporal head, which always runs on it under auto), int8 is 1.3-1.6x faster on OpenVINO than
# on ONNX Runtime, bf16 exists only on OpenVINO.
AUTO_RUNTIME = {"fp32": "onnxruntime", "bf16": "openvino", "int8": "openvino"}
OPENVINO_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: QDQ layers int8, the rest f32


class RuntimeUnavailable(Exception):
    """The chosen engine is not installed, or cannot run this precision."""


class CompiledModel(Protocol):
    runtime: str  # e.g. "onnxruntime 1.32.0" or "openvino 2026.4.1 (bf16)"
    input_names: list[str]
    output_names: list[str]
    input_shape: list[int | str | None]  # of the first input; the batch axis is symbolic

    def run(self, output: str, feed: dict[str, np.ndarray]) -> np.ndarray: ...


def resolve_runtime(runtime: str, precision: str) -> str:
    chosen = AUTO_RUNTIME[precision] if runtime == "auto" else runtime
    if chosen not in RUNTIMES:
        raise RuntimeUnavailable(f"unknown runtime {runtime!r}: auto, {', '.join(RUNTIMES)}")
    _require_openvino_for_bf16(chosen, precision)
    return chosen


def _require_openvino_for_bf16(runtime: str, precision: str) -> None:
    if precision == "bf16" and runtime != "openvino":
        raise RuntimeUnavailable("bf16 models run on OpenVINO: set DEEPFAKE_RUNTIME=openvino (or auto)")


class OnnxRuntimeModel:
    def __init__(self, path: Path, memory_arena: bool = True) -> None:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = memory_arena
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.runtime = f"onnxruntime {onnxruntime.__version__}"
        self.input_names = [tensor.name for tensor in self.session.get_inputs()]
        self.output_names = [tensor.name for tensor in self.session.get_outputs()]
        self.input_shape = list(self.session.get_inputs()[0].shape)

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, output: str, feed: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run([output], feed)[0]  # releases the GIL; thread-safe


class OpenVinoModel:
    def __init__(self, path: Path, precision: str = "fp32", hint: str = "LATENCY") -> None:
        try:
            import openvino
        except ImportError as error:
            raise RuntimeUnavailable("OpenVINO is not installed: pip install '.[openvino]'") from error
        core = openvino.Core()
        source = core.read_model(str(path))
        config = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": OPENVINO_PRECISION[precision]}
        self.compiled = core.compile_model(source, "CPU", config)
        applied = self.compiled.get_property("INFERENCE_PRECISION_HINT")  # what this CPU really does
        applied = applied.to_string() if hasattr(applied, "to_string") else str(applied)
        self.runtime = f"openvino {openvino.get_version().split('-')[0]} ({applied})"
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]
        self.input_shape = [dim.get_length() if dim.is_static else None for dim in source.inputs[0].get_partial_shape()]
        # the ONNX file's metadata, as OpenVINO read it (no second load of the weights)
        info = source.get_rt_info()
        framework = info["framework"] if "framework" in info.keys() else {}
        self.metadata = {key: value.astype(str) for key, value in framework.items()}
        self._local = threading.local()  # an infer request is not thread-safe: one per thread

    def run(self, output: str, feed: dict[str, np.ndarray]) -> np.ndarray:
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        request.infer(feed)
        return np.array(request.get_tensor(output).data, copy=True)  # the request reuses its buffers


def open_model(
    path: Path, runtime: str, precision: str = "fp32", memory_arena: bool = True
) -> OnnxRuntimeModel | OpenVinoModel:
    _require_openvino_for_bf16(runtime, precision)
    if runtime == "openvino":
        return OpenVinoModel(path, precision)
    return OnnxRuntimeModel(path, memory_arena)
