"""Read a user's checkpoint, tell which family and sizes it has, and explain exactly why a file is refused.

Sizes come from the tensors themselves (the original's scripts built the same classes with other
LSTM widths, layer counts and positional tables); only what the weights cannot show — attention
heads and activation, the legacy LSTM's axis use — is an option, and it is recorded.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from export.architectures import AttentionDetector, AttentionShape, Detector, LegacyDetector, LegacyShape
from model_contract import CHECKPOINT_SHA256, FAMILY, MAX_TIME, UNTRAINED_DEMO, PreprocessingProfile, default_profile

FAMILIES = ("attention", "legacy")
_FAMILY_PREFIX = {"attention": "feature_extractor.", "legacy": "model."}
_WRAPPER_KEYS = ("state_dict", "model_state_dict")
_LIST_AT_MOST = 5
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
ZIP_MAGIC, PICKLE_PROTOCOL = b"PK\x03\x04", 0x80  # torch.save's two formats: a zip archive, or a bare pickle


def convert_whole_model(path: Path) -> str:
    """The one-line conversion of a whole pickled model into a state dict, with the user's own file
    names (``<name>.state_dict.pth`` beside it)."""
    target = path.with_name(f"{path.stem}.state_dict.pth")
    return (
        f'python -c "import torch; torch.save(torch.load({str(path)!r}, weights_only=False).state_dict(), '
        f'{str(target)!r})", then --checkpoint {target}'
    )


def unreadable_reason(path: Path, error: Exception) -> str:
    """Why torch.load refused a file, in words: a file that is neither of torch.save's formats says
    so with its first bytes (the unpickler's own words there are an opcode number, e.g. "101")."""
    with path.open("rb") as stream:
        head = stream.read(8)
    if not head.startswith(ZIP_MAGIC) and (not head or head[0] != PICKLE_PROTOCOL):
        shown = "".join(chr(byte) if 32 <= byte < 127 else "." for byte in head[:4])
        return f"it is neither a torch.save zip archive nor a pickle: it starts with {head[:4].hex(' ')} ('{shown}')"
    text = _one_line(str(error))
    reason = re.sub(r"^Weights only load failed\..*?(WeightsUnpickler error: )", "", text) or type(error).__name__
    return "the unpickler said: " + reason.split(". Please use")[0].split(" Check the documentation")[0]


class CheckpointError(Exception):
    """A checkpoint that cannot be exported; the message is one line that names the problem."""


@dataclass(frozen=True)
class Options:
    """What the weights cannot tell, as the user chose it."""

    num_heads: int = 4
    activation: str = "gelu"
    legacy_batch_first: bool = False


def unconfirmed_options(family: str, options: Options) -> list[str]:
    """What the export took from the options because the weights cannot show it, each with the value
    every one of the original's definitions used: a wrong value exports cleanly (parity compares the
    export with itself) and answers differently, so it is said every time."""
    if family == "attention":
        return [
            f"--heads {options.num_heads}: the weights cannot tell the number of attention heads; the original's"
            " served application used 4, its other model definition 8. Use the value of the script that trained"
            " this checkpoint.",
            f"--activation {options.activation}: the weights cannot tell the MLP's activation; the served"
            " application used gelu, the 8-head definition relu.",
        ]
    return [
        f"--legacy-batch-first {'given' if options.legacy_batch_first else 'not given'}: the weights cannot tell"
        " whether the LSTM was built batch_first; the original's served application built it without"
        " (batch_first=False)."
    ]


@dataclass(frozen=True)
class LoadedModel:
    detector: Detector
    preprocessing: PreprocessingProfile
    checkpoint_sha256: str
    is_demo: bool

    @property
    def family(self) -> str:
        return self.detector.family

    @property
    def input_size(self) -> int:
        return self.preprocessing.size

    @property
    def max_time(self) -> int | None:
        """The longest sequence the temporal head accepts (the attention family's positional table)."""
        return self.detector.shape.max_time if isinstance(self.detector, AttentionDetector) else None

    def export_metadata(self) -> dict[str, str]:
        """What every export records (ONNX metadata, config.pbtxt parameters), as strings."""
        return {
            FAMILY: self.family,
            **self.detector.shape.describe(),
            MAX_TIME: str(self.max_time or "none"),
            "input_size": str(self.input_size),
            **self.preprocessing.to_parameters(),
            CHECKPOINT_SHA256: self.checkpoint_sha256,
            UNTRAINED_DEMO: str(self.is_demo).lower(),
        }


def sha256_of_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def _one_line(text: str) -> str:
    return " ".join(_ANSI.sub("", text).split())


def _whole_model_class(path: Path) -> str | None:
    """The class of a pickled ``torch.save(model)``, found without running any of the file's code."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:
        return None
    if not any(".nn.modules." in name for name in unsafe):
        return None
    own = sorted(name for name in unsafe if not name.startswith(("torch.", "torchvision.")))
    return ", ".join(own[:3]) if own else "torch.nn.Module"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint: flat, under ``state_dict``/``model_state_dict``, ``module.``-prefixed."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        whole_model = _whole_model_class(path)
        if whole_model:
            raise CheckpointError(
                f"{path}: a whole pickled model (classes {whole_model}), not a state dict; it cannot be read safely."
                f" Convert it once, where its class is importable: {convert_whole_model(path)}"
            ) from exc
        reason = unreadable_reason(path, exc)
        raise CheckpointError(f"{path}: not a PyTorch checkpoint readable with weights_only=True; {reason}") from exc
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


def _lstm_sizes(state_dict: dict[str, torch.Tensor], family: str) -> tuple[int, int, bool, bool]:
    """(hidden, layers, bidirectional, bias) of ``lstm.*``, from ``weight_hh_l0``'s shape and the keys."""
    if "lstm.weight_hh_l0" not in state_dict:
        raise CheckpointError(f"{family} checkpoint without 'lstm.weight_hh_l0': cannot size its LSTM")
    layers = sum(1 for key in state_dict if re.fullmatch(r"lstm\.weight_ih_l\d+", key))
    return (
        state_dict["lstm.weight_hh_l0"].shape[1],
        layers,
        "lstm.weight_ih_l0_reverse" in state_dict,
        "lstm.bias_ih_l0" in state_dict,
    )


def _shape_of(state_dict: dict[str, torch.Tensor], key: str, family: str) -> tuple[int, ...]:
    if key not in state_dict:
        raise CheckpointError(f"{family} checkpoint without '{key}': cannot size the model")
    return tuple(state_dict[key].shape)


def attention_shape(state_dict: dict[str, torch.Tensor], options: Options) -> AttentionShape:
    hidden, layers, bidirectional, _ = _lstm_sizes(state_dict, "attention")
    table = _shape_of(state_dict, "attention.positional_encoding.pe", "attention")
    fc1 = _shape_of(state_dict, "fc1.weight", "attention")
    if len(table) != 3 or len(fc1) != 2:
        raise CheckpointError(f"attention checkpoint with a positional table of shape {table} and fc1 of {fc1}")
    shape = AttentionShape(
        lstm_hidden=hidden,
        lstm_layers=layers,
        bidirectional=bidirectional,
        max_time=table[1],
        fc_hidden=fc1[0],
        num_heads=options.num_heads,
        activation=options.activation,
    )
    if table[2] != shape.width:
        raise CheckpointError(f"the positional table is {table[2]} wide but the LSTM gives {shape.width} channels")
    _check_heads(shape.num_heads, shape.width)
    return shape


def _check_heads(num_heads: int, width: int) -> None:
    if num_heads < 1 or width % num_heads:
        raise CheckpointError(f"--heads {num_heads} does not divide the {width} attention channels")


def legacy_shape(state_dict: dict[str, torch.Tensor], options: Options) -> LegacyShape:
    hidden, layers, bidirectional, bias = _lstm_sizes(state_dict, "legacy")
    return LegacyShape(
        hidden_size=hidden,
        num_layers=layers,
        bidirectional=bidirectional,
        bias=bias,
        batch_first=options.legacy_batch_first,
    )


def build_detector(family: str, options: Options, state_dict: dict | None = None) -> Detector:
    """The detector for ``state_dict``'s sizes, or the served application's sizes without one."""
    if family == "attention":
        if state_dict is None:
            _check_heads(options.num_heads, AttentionShape().width)
            return AttentionDetector(AttentionShape(num_heads=options.num_heads, activation=options.activation))
        return AttentionDetector(attention_shape(state_dict, options))
    shape = (
        legacy_shape(state_dict, options)
        if state_dict is not None
        else LegacyShape(batch_first=options.legacy_batch_first)
    )
    return LegacyDetector(shape)


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


def load_checkpoint(
    path: Path,
    family: str | None = None,
    options: Options = Options(),
    preprocessing: PreprocessingProfile | None = None,
) -> LoadedModel:
    """A user's checkpoint as an eval-mode detector, with what the export records about it."""
    state_dict = read_state_dict(path)
    detected = detect_family(state_dict)
    if family is not None and family != detected:
        raise CheckpointError(
            f"{path}: --family {family} was asked for, but the keys are those of the {detected} family"
        )
    detector = build_detector(detected, options, state_dict)
    load_strictly(detector, state_dict, _describe(detector))
    return LoadedModel(detector.eval(), preprocessing or default_profile(detected), sha256_of_file(path), is_demo=False)


def demo_model(
    family: str = "attention",
    options: Options = Options(),
    seed: int = 0,
    preprocessing: PreprocessingProfile | None = None,
) -> LoadedModel:
    """Seeded random weights, so everything else runs with no checkpoint. Its verdicts mean nothing."""
    torch.manual_seed(seed)
    detector = build_detector(family, options)
    return LoadedModel(
        detector.eval(), preprocessing or default_profile(family), f"none (untrained demo, seed {seed})", is_demo=True
    )


def _describe(detector: Detector) -> str:
    sizes = ", ".join(f"{key}={value}" for key, value in detector.shape.describe().items())
    return f"{detector.family} ({sizes})"


def _strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def _some(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_AT_MOST])
    return shown + (f", … (+{len(items) - _LIST_AT_MOST} more)" if len(items) > _LIST_AT_MOST else "")
