"""Read a user's checkpoint, tell which family it is, and explain exactly why a file is refused."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from export.architectures import AttentionDetector, Detector, LegacyDetector, LegacyLSTMShape

FAMILIES = ("attention", "legacy")
_FAMILY_PREFIX = {"attention": "feature_extractor.", "legacy": "model."}
_WRAPPER_KEYS = ("state_dict", "model_state_dict")
_LIST_AT_MOST = 5


class CheckpointError(Exception):
    """A checkpoint that cannot be exported; the message is one line that names the problem."""


@dataclass(frozen=True)
class LoadedModel:
    detector: Detector
    family: str
    num_heads: int | None
    activation: str | None
    checkpoint_sha256: str
    is_demo: bool

    @property
    def input_size(self) -> int:
        return self.detector.input_size

    def export_metadata(self) -> dict[str, str]:
        """What every export records (ONNX metadata, config.pbtxt parameters), as strings."""
        return {
            "family": self.family,
            "num_heads": str(self.num_heads or "n/a"),
            "activation": self.activation or "n/a",
            "input_size": str(self.input_size),
            "checkpoint_sha256": self.checkpoint_sha256,
            "untrained_demo": str(self.is_demo).lower(),
        }

    @classmethod
    def of(cls, detector: Detector, family: str, num_heads: int, activation: str, checkpoint_sha256: str,
           is_demo: bool) -> "LoadedModel":
        """Heads and activation only mean something for the attention family; recorded as such."""
        is_attention = family == "attention"
        return cls(detector.eval(), family, num_heads if is_attention else None, activation if is_attention else None,
                   checkpoint_sha256, is_demo)


def sha256_of_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint: flat, under ``state_dict``/``model_state_dict``, ``module.``-prefixed."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises a dozen types on arbitrary bytes
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a PyTorch checkpoint readable with weights_only=True ({reason})") from exc
    if isinstance(content, dict):
        for wrapper in _WRAPPER_KEYS:
            if isinstance(content.get(wrapper), dict):
                content = content[wrapper]
                break
    if not isinstance(content, dict) or not content:
        raise CheckpointError(f"{path}: expected a state dict (a dict of tensors), found {type(content).__name__}")
    not_tensors = [key for key, value in content.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: not a state dict; entries that are not tensors: {_some(not_tensors)}")
    return {_strip_prefix(key, "module."): tensor for key, tensor in content.items()}


def detect_family(state_dict: dict[str, torch.Tensor]) -> str:
    found = [family for family, prefix in _FAMILY_PREFIX.items() if any(k.startswith(prefix) for k in state_dict)]
    if len(found) != 1:
        raise CheckpointError(
            "cannot tell the model family: expected keys starting with 'feature_extractor.' (attention)"
            f" or 'model.' (legacy), found {_some(sorted(state_dict))}"
        )
    return found[0]


def legacy_lstm_shape(state_dict: dict[str, torch.Tensor]) -> LegacyLSTMShape:
    """The legacy LSTM's arguments as the keys show them (bias and direction vary between files)."""
    if "lstm.weight_hh_l0" not in state_dict:
        raise CheckpointError("legacy checkpoint without 'lstm.weight_hh_l0': cannot size its LSTM")
    layers = sum(1 for key in state_dict if key.startswith("lstm.weight_ih_l") and not key.endswith("_reverse"))
    return LegacyLSTMShape(
        hidden_size=state_dict["lstm.weight_hh_l0"].shape[1],
        num_layers=layers,
        bidirectional="lstm.weight_ih_l0_reverse" in state_dict,
        bias="lstm.bias_ih_l0" in state_dict,
    )


def build_detector(family: str, num_heads: int, activation: str, state_dict: dict | None = None) -> Detector:
    if family == "attention":
        return AttentionDetector(num_heads=num_heads, activation=activation)
    return LegacyDetector(legacy_lstm_shape(state_dict) if state_dict is not None else LegacyLSTMShape())


def load_strictly(detector: Detector, state_dict: dict[str, torch.Tensor], architecture: str) -> None:
    """``load_state_dict(strict=True)``, after naming every missing, unexpected or misshapen key."""
    expected = detector.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    misshapen = [
        f"{key} {tuple(state_dict[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in sorted(set(expected) & set(state_dict))
        if state_dict[key].shape != expected[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_some(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_some(unexpected)}")
    if misshapen:
        problems.append(f"{len(misshapen)} keys with the wrong shape: {_some(misshapen)}")
    if problems:
        raise CheckpointError(f"checkpoint does not match the {architecture} architecture: " + "; ".join(problems))
    detector.load_state_dict(state_dict, strict=True)


def load_checkpoint(path: Path, family: str | None = None, num_heads: int = 4, activation: str = "gelu") -> LoadedModel:
    """A user's checkpoint as an eval-mode detector, with what the export records about it."""
    state_dict = read_state_dict(path)
    detected = detect_family(state_dict)
    if family is not None and family != detected:
        raise CheckpointError(f"{path}: --family {family} was asked for, but the keys are those of the {detected} family")
    detector = build_detector(detected, num_heads, activation, state_dict)
    load_strictly(detector, state_dict, _describe(detected, num_heads, activation))
    return LoadedModel.of(detector, detected, num_heads, activation, sha256_of_file(path), is_demo=False)


def demo_model(family: str = "attention", num_heads: int = 4, activation: str = "gelu", seed: int = 0) -> LoadedModel:
    """Seeded random weights, so everything else runs with no checkpoint. Its verdicts mean nothing."""
    torch.manual_seed(seed)
    detector = build_detector(family, num_heads, activation)
    return LoadedModel.of(detector, family, num_heads, activation, f"none (untrained demo, seed {seed})", is_demo=True)


def _describe(family: str, num_heads: int, activation: str) -> str:
    return f"attention (heads={num_heads}, activation={activation})" if family == "attention" else "legacy"


def _strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix):] if key.startswith(prefix) else key


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_AT_MOST])
    return shown + (f", … (+{len(items) - _LIST_AT_MOST} more)" if len(items) > _LIST_AT_MOST else "")
