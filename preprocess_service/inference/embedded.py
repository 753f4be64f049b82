"""ONNX Runtime in-process on the exported files: the laptop default, no Triton needed.

The exact ONNX files Triton would serve, so the two paths cannot drift apart. Sessions are made
once; ``run`` releases the GIL and is thread-safe, so calls go to a small thread pool of their own
(bounded: more threads than cores only queue inside ONNX Runtime) and the event loop stays free.
Tensor names come from the sessions, the largest batch from the repository's config.pbtxt.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from model_contract import DEFAULT_MAX_BATCH, TEMPORAL_OUTPUTS
from preprocess_service.errors import BackendUnavailable
from preprocess_service.inference.base import ChunkedBackend, ModelInfo, ServedModels


def latest_version_file(repository: Path, model_name: str) -> Path:
    """``<repository>/<model>/<highest numeric version>/model.onnx``, as Triton's default policy picks."""
    versions = sorted((int(p.name) for p in (repository / model_name).glob("[0-9]*") if p.name.isdigit()), reverse=True)
    for version in versions:
        candidate = repository / model_name / str(version) / "model.onnx"
        if candidate.is_file():
            return candidate
    raise BackendUnavailable(f"no exported {model_name} in the model repository: run `make model`")


def max_batch_of(model_dir: Path) -> int:
    """``max_batch_size`` of the model's config.pbtxt, what Triton would enforce; the default without one."""
    config = model_dir / "config.pbtxt"
    if not config.is_file():
        return DEFAULT_MAX_BATCH
    return text_format.Parse(config.read_text(), model_config_pb2.ModelConfig()).max_batch_size or DEFAULT_MAX_BATCH


class EmbeddedBackend(ChunkedBackend):
    name = "embedded"

    def __init__(
        self, repository: Path, backbone_model: str, temporal_model: str, threads: int = 1, memory_arena: bool = True
    ) -> None:
        self._repository, self._names = repository, (backbone_model, temporal_model)
        self._memory_arena = memory_arena
        self._backbone: onnxruntime.InferenceSession | None = None
        self._temporal: onnxruntime.InferenceSession | None = None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inference")

    def _load(self) -> ModelInfo:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_cpu_mem_arena = self._memory_arena
        backbone_name, temporal_name = self._names
        backbone = onnxruntime.InferenceSession(
            str(latest_version_file(self._repository, backbone_name)), options, providers=["CPUExecutionProvider"]
        )
        temporal = onnxruntime.InferenceSession(
            str(latest_version_file(self._repository, temporal_name)), options, providers=["CPUExecutionProvider"]
        )
        temporal_outputs = [output.name for output in temporal.get_outputs()]
        if TEMPORAL_OUTPUTS[0] not in temporal_outputs:
            raise BackendUnavailable(f"{temporal_name} has no '{TEMPORAL_OUTPUTS[0]}' output: re-export it")
        self.served = ServedModels(
            backbone=backbone_name,
            temporal=temporal_name,
            backbone_input=backbone.get_inputs()[0].name,
            backbone_output=backbone.get_outputs()[0].name,
            temporal_input=temporal.get_inputs()[0].name,
            temporal_output=TEMPORAL_OUTPUTS[0],
            input_size=int(backbone.get_inputs()[0].shape[1]),
            max_batch=min(max_batch_of(self._repository / name) for name in self._names),
        )
        self._backbone, self._temporal = backbone, temporal
        return ModelInfo.from_parameters(
            backbone.get_modelmeta().custom_metadata_map, self.served.input_size, self.name
        )

    async def start(self) -> ModelInfo:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._load)

    async def ready(self) -> bool:
        return self._backbone is not None and self._temporal is not None

    async def _run(self, session: onnxruntime.InferenceSession | None, output: str, name: str, data: np.ndarray):
        if session is None:
            raise BackendUnavailable("the embedded models are not loaded")
        outputs = await asyncio.get_running_loop().run_in_executor(self._pool, session.run, [output], {name: data})
        return outputs[0]

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
