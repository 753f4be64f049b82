"""The one interface every inference backend implements, and what they share.

A backend runs the two exported models: ``features`` (backbone: uint8 crops → 2048-d features)
and ``probabilities`` (temporal head: feature sequences → [p_fake, p_real]). Calls larger than
the models' ``max_batch_size`` are split here, once, for every backend.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from model_contract.identity import ModelInfo, ModelMismatch
from preprocess_service.errors import BackendUnavailable


def identify(parameters: dict[str, str], input_size: int, backend: str, runtime: str) -> ModelInfo:
    """The served model's identity from its recorded parameters; a contradiction is a 503 until
    the model is re-exported."""
    try:
        return ModelInfo.from_parameters(parameters, input_size, backend, runtime=runtime)
    except ModelMismatch as error:
        raise BackendUnavailable(str(error)) from None


@dataclass(frozen=True)
class ServedModels:
    """What the backends learn from the served models themselves, as Triton's client examples do:
    tensor names, the crop size and the largest batch each model takes."""

    backbone: str
    temporal: str
    backbone_input: str
    backbone_output: str
    temporal_input: str
    temporal_output: str
    input_size: int
    max_batch: int


class InferenceBackend(Protocol):
    name: str

    async def start(self) -> ModelInfo:
        """Connect / load once, at application start-up; raises BackendUnavailable."""

    async def ready(self) -> bool:
        """Both models can answer now."""

    async def features(self, faces: np.ndarray) -> np.ndarray:
        """``[n, S, S, 3]`` uint8 → ``[n, 2048]`` float32."""

    async def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``[batch, time, 2048]`` float32 → ``[batch, 2]`` (index 0 = FAKE)."""

    async def close(self) -> None: ...


class ChunkedBackend(ABC):
    """The two calls every backend answers, split once, here, into pieces the models accept."""

    served: ServedModels | None = None

    @abstractmethod
    async def _run_backbone(self, faces: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    async def _run_temporal(self, features: np.ndarray) -> np.ndarray: ...

    def _max_batch(self) -> int:
        if self.served is None:
            raise BackendUnavailable("the models have not been loaded yet")
        return self.served.max_batch

    async def features(self, faces: np.ndarray) -> np.ndarray:
        return await in_chunks(self._run_backbone, np.ascontiguousarray(faces), self._max_batch())

    async def probabilities(self, features: np.ndarray) -> np.ndarray:
        return await in_chunks(self._run_temporal, np.ascontiguousarray(features, np.float32), self._max_batch())


async def in_chunks(
    call: Callable[[np.ndarray], Awaitable[np.ndarray]], batch: np.ndarray, max_batch: int
) -> np.ndarray:
    """``call`` over ``batch`` split along axis 0 into pieces of at most ``max_batch``, concurrently."""
    if len(batch) <= max_batch:
        return await call(batch)
    pieces = [batch[start : start + max_batch] for start in range(0, len(batch), max_batch)]
    return np.concatenate(await asyncio.gather(*(call(piece) for piece in pieces)))
