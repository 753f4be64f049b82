"""The one interface every inference backend implements, and what they share.

A backend runs the two exported models: ``features`` (backbone: uint8 crops → 2048-d features)
and ``probabilities`` (temporal head: feature sequences → [p_fake, p_real]). Calls larger than
the models' ``max_batch_size`` are split here, once, for every backend.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

import numpy as np


@dataclass(frozen=True)
class ModelInfo:
    """What an export recorded about its model (``parameters`` of config.pbtxt / ONNX metadata)."""

    family: str
    input_size: int
    untrained_demo: bool
    checkpoint_sha256: str
    backend: str

    @classmethod
    def from_parameters(cls, parameters: dict[str, str], input_size: int, backend: str) -> "ModelInfo":
        return cls(
            family=parameters.get("family", "unknown"),
            input_size=input_size,
            untrained_demo=parameters.get("untrained_demo", "false") == "true",
            checkpoint_sha256=parameters.get("checkpoint_sha256", "unknown"),
            backend=backend,
        )


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


async def in_chunks(call: Callable[[np.ndarray], Awaitable[np.ndarray]], batch: np.ndarray, max_batch: int) -> np.ndarray:
    """``call`` over ``batch`` split along axis 0 into pieces of at most ``max_batch``, concurrently."""
    if len(batch) <= max_batch:
        return await call(batch)
    pieces = [batch[start:start + max_batch] for start in range(0, len(batch), max_batch)]
    return np.concatenate(await asyncio.gather(*(call(piece) for piece in pieces)))
