"""The exported files run in-process (ONNX Runtime or OpenVINO): the laptop default, no Triton needed.

The exact ONNX files Triton would serve, so the two paths cannot drift apart. Models are compiled
once; calls release the GIL, so they go to a small thread pool of their own (bounded: more threads
than cores only queue inside the engine) and the event loop stays free. Tensor names come from the
models, the largest batch from the repository's config.pbtxt. The backbone runs at the precision
asked for (its own model folder); the temporal head is always the fp32 one.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from model_contract import DEFAULT_MAX_BATCH, PRECISION, TEMPORAL_OUTPUTS
from preprocess_service.errors import BackendUnavailable
from preprocess_service.inference.base import ChunkedBackend, ModelInfo, ServedModels, identify
from preprocess_service.inference.runtimes import CompiledModel, RuntimeUnavailable, open_model, resolve_runtime


def latest_version_file(repository: Path, model_name: str) -> Path:
    """``<repository>/<model>/<highest numeric version>/model.onnx``, as Triton's default policy picks."""
    versions = sorted((int(p.name) for p in (repository / model_name).glob("[0-9]*") if p.name.isdigit()), reverse=True)
    for version in versions:
        candidate = repository / model_name / str(version) / "model.onnx"
        if candidate.is_file():
            return candidate
    raise BackendUnavailable(f"no exported {model_name} in the model repository: run `make model`")


def _config(model_dir: Path) -> model_config_pb2.ModelConfig | None:
    config = model_dir / "config.pbtxt"
    return text_format.Parse(config.read_text(), model_config_pb2.ModelConfig()) if config.is_file() else None


def max_batch_of(model_dir: Path) -> int:
    """``max_batch_size`` of the model's config.pbtxt, what Triton would enforce; the default without one."""
    config = _config(model_dir)
    return (config.max_batch_size if config else 0) or DEFAULT_MAX_BATCH


def config_parameters(model_dir: Path) -> dict[str, str]:
    """config.pbtxt ``parameters``, as Triton would serve them: they win over the ONNX metadata, so a
    threshold an evaluation recorded there applies to the embedded backend too."""
    config = _config(model_dir)
    return {key: value.string_value for key, value in config.parameters.items()} if config else {}


class EmbeddedBackend(ChunkedBackend):
    name = "embedded"

    def __init__(
        self,
        repository: Path,
        backbone_model: str,
        temporal_model: str,
        threads: int = 1,
        memory_arena: bool = True,
        runtime: str = "auto",
        precision: str = "fp32",
    ) -> None:
        self._repository, self._names = repository, (backbone_model, temporal_model)
        self._memory_arena, self._runtime, self._precision = memory_arena, runtime, precision
        self._backbone: CompiledModel | None = None
        self._temporal: CompiledModel | None = None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")

    def _load(self) -> ModelInfo:
        backbone_name, temporal_name = self._names
        try:
            runtime = resolve_runtime(self._runtime, self._precision)
            backbone = open_model(
                latest_version_file(self._repository, backbone_name), runtime, self._precision, self._memory_arena
            )
            # auto: the head on ONNX Runtime, measured faster for it at fp32 (benchmarks/model_cpu.py)
            temporal_runtime = "onnxruntime" if self._runtime == "auto" else runtime
            temporal = open_model(latest_version_file(self._repository, temporal_name), temporal_runtime, "fp32")
        except RuntimeUnavailable as error:
            raise BackendUnavailable(str(error)) from error
        recorded = backbone.metadata.get(PRECISION, "fp32")
        if recorded != self._precision:
            raise BackendUnavailable(
                f"{backbone_name} holds a {recorded} model, not {self._precision}:"
                " re-export it or change DEEPFAKE_PRECISION"
            )
        if TEMPORAL_OUTPUTS[0] not in temporal.output_names:
            raise BackendUnavailable(f"{temporal_name} has no '{TEMPORAL_OUTPUTS[0]}' output: re-export it")
        self.served = ServedModels(
            backbone=backbone_name,
            temporal=temporal_name,
            backbone_input=backbone.input_names[0],
            backbone_output=backbone.output_names[0],
            temporal_input=temporal.input_names[0],
            temporal_output=TEMPORAL_OUTPUTS[0],
            input_size=int(backbone.input_shape[1]),  # type: ignore[arg-type]
            max_batch=min(max_batch_of(self._repository / name) for name in self._names),
        )
        self._backbone, self._temporal = backbone, temporal
        parameters = {**backbone.metadata, **config_parameters(self._repository / backbone_name)}
        return identify(parameters, self.served.input_size, self.name, backbone.runtime)

    async def start(self) -> ModelInfo:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._load)

    async def ready(self) -> bool:
        return self._backbone is not None and self._temporal is not None

    async def _run(self, model: CompiledModel | None, output: str, name: str, data: np.ndarray) -> np.ndarray:
        if model is None:
            raise BackendUnavailable("the embedded models are not loaded")
        return await asyncio.get_running_loop().run_in_executor(self._pool, model.run, output, {name: data})

    async def _run_backbone(self, faces: np.ndarray) -> np.ndarray:
        served = self.served
        assert served is not None  # _max_batch() refused before
        return await self._run(self._backbone, served.backbone_output, served.backbone_input, faces)

    async def _run_temporal(self, features: np.ndarray) -> np.ndarray:
        served = self.served
        assert served is not None
        return await self._run(self._temporal, served.temporal_output, served.temporal_input, features)

    async def close(self) -> None:
        self._backbone = self._temporal = None
        self._pool.shutdown(wait=False, cancel_futures=True)
