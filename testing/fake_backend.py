"""An inference backend without a model, for the fast tests: the ``InferenceBackend`` protocol with
arithmetic that reacts to its input, so a wrong crop or a swapped frame still changes a score.

Injected through ``create_app(settings, backend=FakeBackend())``: everything else (decoding with
PyAV, MediaPipe, crops, scoring, receipts, history, routes) is the real service. It cannot stand
in for what it replaces, the exported models and their runtimes: the integration tests run those.
"""

from __future__ import annotations

import numpy as np

from model_contract import FEATURE_DIM, default_profile
from model_contract.identity import ModelInfo

CHECKPOINT = "f" * 64  # a known identity, so answers are cacheable as a real export's are


class FakeBackend:
    name = "fake"

    def __init__(self, family: str = "attention", ready: bool = True) -> None:
        profile = default_profile(family)
        self.model = ModelInfo(
            family=family,
            input_size=profile.size,
            untrained_demo=True,
            checkpoint_sha256=CHECKPOINT,
            backend=self.name,
            preprocessing=profile,
            architecture={"fake": "true"},
            runtime="numpy",
        )
        self._ready = ready
        self.calls: list[tuple[str, tuple[int, ...]]] = []  # (model, input shape), in call order
        self.closed = False

    async def start(self) -> ModelInfo:
        return self.model

    async def ready(self) -> bool:
        return self._ready

    async def features(self, faces: np.ndarray) -> np.ndarray:
        """Each crop's mean brightness per row band, tiled to the feature width: crops that differ differ."""
        self.calls.append(("backbone", faces.shape))
        bands = faces.astype(np.float32).mean(axis=(2, 3)) / 255.0  # [n, S]
        repeats = -(-FEATURE_DIM // bands.shape[1])
        return np.tile(bands, (1, repeats))[:, :FEATURE_DIM].astype(np.float32)

    async def probabilities(self, features: np.ndarray) -> np.ndarray:
        """P(FAKE) a smooth function of the sequence's mean feature, [p_fake, p_real] per row."""
        self.calls.append(("temporal", features.shape))
        score = features.mean(axis=(1, 2)) * 6.0 - 3.0
        p_fake = 1.0 / (1.0 + np.exp(-score))
        return np.stack([p_fake, 1.0 - p_fake], axis=1).astype(np.float32)

    async def close(self) -> None:
        self.closed = True
