"""ONNX Runtime in-process on the exported files: the laptop default, no Triton needed.

The exact ONNX files Triton would serve, so the two paths cannot drift apart. Sessions are made
once; ``run`` releases the GIL and is thread-safe, so calls go to worker threads and the event
loop stays free.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnxruntime

from model_contract import BACKBONE_INPUT, BACKBONE_OUTPUT, TEMPORAL_INPUT, TEMPORAL_OUTPUTS
from preprocess_service.errors import BackendUnavailable
from preprocess_service.inference.base import ModelInfo, in_chunks


def latest_version_file(repository: Path, model_name: str) -> Path:
    """``<repository>/<model>/<highest numeric version>/model.onnx``, as Triton's default policy picks."""
    versions = sorted((int(p.name) for p in (repository / model_name).glob("[0-9]*") if p.name.isdigit()), reverse=True)
    for version in versions:
        candidate = repository / model_name / str(version) / "model.onnx"
        if candidate.is_file():
            return candidate
    raise BackendUnavailable(f"no exported {model_name} in {repository}: run `make model` or `deepfake-export --demo`")


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, repository: Path, backbone_model: str, temporal_model: str, max_batch: int = 64) -> None:
        self._repository, self._names, self._max_batch = repository, (backbone_model, temporal_model), max_batch
        self._backbone: onnxruntime.InferenceSession | None = None
        self._temporal: onnxruntime.InferenceSession | None = None

    def _load(self) -> ModelInfo:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        backbone_name, temporal_name = self._names
        self._backbone = onnxruntime.InferenceSession(
            str(latest_version_file(self._repository, backbone_name)), options, providers=["CPUExecutionProvider"]
        )
        self._temporal = onnxruntime.InferenceSession(
            str(latest_version_file(self._repository, temporal_name)), options, providers=["CPUExecutionProvider"]
        )
        input_size = int(self._backbone.get_inputs()[0].shape[1])
        return ModelInfo.from_parameters(self._backbone.get_modelmeta().custom_metadata_map, input_size, self.name)

    async def start(self) -> ModelInfo:
        return await asyncio.to_thread(self._load)

    async def ready(self) -> bool:
        return self._backbone is not None and self._temporal is not None

    @staticmethod
    def _loaded(session: onnxruntime.InferenceSession | None) -> onnxruntime.InferenceSession:
        if session is None:
            raise BackendUnavailable("the embedded models are not loaded")
        return session

    async def _run_backbone(self, faces: np.ndarray) -> np.ndarray:
        session = self._loaded(self._backbone)
        return (await asyncio.to_thread(session.run, [BACKBONE_OUTPUT], {BACKBONE_INPUT: faces}))[0]

    async def _run_temporal(self, features: np.ndarray) -> np.ndarray:
        session = self._loaded(self._temporal)
        return (await asyncio.to_thread(session.run, [TEMPORAL_OUTPUTS[0]], {TEMPORAL_INPUT: features}))[0]

    async def features(self, faces: np.ndarray) -> np.ndarray:
        return await in_chunks(self._run_backbone, faces, self._max_batch)

    async def probabilities(self, features: np.ndarray) -> np.ndarray:
        return await in_chunks(self._run_temporal, features, self._max_batch)

    async def close(self) -> None:
        self._backbone = self._temporal = None
