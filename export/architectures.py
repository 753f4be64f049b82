"""The two checkpoint families of SEED_MODEL.md, written so users' files load with strict=True.

Every parameter name here is part of the contract with users' ``checkpoint.pth`` files: rename
nothing. Sizes are not fixed: the original's scripts built the same classes with other LSTM
widths, layer counts and positional tables, so each model is built from a shape that
``checkpoint.py`` reads off the checkpoint's tensors. Besides the full models (used to load
checkpoints and as the parity reference), this module defines the two halves that serving is
built on (backbone and temporal head), which share the full model's submodules and weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import resnext50_32x4d

from model_contract import FEATURE_DIM, PreprocessingProfile, default_profile

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


@dataclass(frozen=True)
class AttentionShape:
    """Family "attention": sizes read from the weights, plus the two choices the weights cannot show."""

    lstm_hidden: int = 512
    lstm_layers: int = 2
    bidirectional: bool = True
    max_time: int = 200  # rows of the positional table: the longest sequence the model accepts
    fc_hidden: int = 512
    num_heads: int = 4  # not in the weights: an export option
    activation: str = "gelu"  # not in the weights: an export option

    @property
    def width(self) -> int:
        """The LSTM's output width, which the attention block and fc1 take."""
        return self.lstm_hidden * (2 if self.bidirectional else 1)

    def describe(self) -> dict[str, str]:
        return {
            key: str(value).lower() if isinstance(value, bool) else str(value)
            for key, value in {**asdict(self), "attention_width": self.width}.items()
        }


@dataclass(frozen=True)
class LegacyShape:
    """Family "legacy": the LSTM's arguments as the keys show them (the bias trap), and its axis use."""

    hidden_size: int = 2048
    num_layers: int = 1
    bidirectional: bool = True
    bias: bool = True
    batch_first: bool = False  # not in the weights: the served app had False (the axis quirk), one script True

    def describe(self) -> dict[str, str]:
        return {
            key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in asdict(self).items()
        }


def resnext_trunk() -> nn.Sequential:
    """ResNeXt50-32x4d without avgpool and fc, as both families stored it (keys ``0.*`` … ``7.*``)."""
    return nn.Sequential(*list(resnext50_32x4d(weights=None).children())[:-2])


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """The standard sinusoidal table: sin on even channels, cos on odd, base 10000."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, length, dim)
    table[0, :, 0::2] = torch.sin(position * div_term)
    table[0, :, 1::2] = torch.cos(position * div_term)
    return table


class PositionalEncoding(nn.Module):
    pe: torch.Tensor

    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(max_len, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[:, : x.shape[1]]


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention`` (self-attention, no extra biases) written out by hand.

    The stock module, used sequence-first as the original did, exports to ONNX with a Reshape
    frozen to the example's (time, batch) and fails at run time on any other size (NOTES.md).
    This is the same computation with the same parameter names (``in_proj_weight``,
    ``in_proj_bias``, ``out_proj.*``), so checkpoints still load strictly, but every shape is
    read at run time. Input and output are batch-first ``[batch, time, dim]``.
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"{dim} channels cannot be split into {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, time = x.shape[0], x.shape[1]
        return x.reshape(batch, time, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        query, key, value = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        query, key, value = self._split_heads(query), self._split_heads(key), self._split_heads(value)
        scores = torch.matmul(query, key.transpose(-2, -1)) / math.sqrt(self.head_dim)
        attended = torch.matmul(torch.softmax(scores, dim=-1), value)  # [batch, heads, time, head_dim]
        attended = attended.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.out_proj(attended)


class TemporalAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, max_time: int) -> None:
        super().__init__()
        self.positional_encoding = PositionalEncoding(dim, max_time)
        self.multihead_attn = SelfAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.positional_encoding(x)
        return self.norm(encoded + self.multihead_attn(encoded))


class AttentionDetector(nn.Module):
    """Family "attention": ResNeXt50 → BiLSTM → self-attention → mean → MLP (sizes from ``shape``)."""

    family = "attention"

    def __init__(self, shape: AttentionShape = AttentionShape()) -> None:
        super().__init__()
        self.shape = shape
        self.feature_extractor = resnext_trunk()
        self.lstm = nn.LSTM(
            FEATURE_DIM,
            shape.lstm_hidden,
            num_layers=shape.lstm_layers,
            bidirectional=shape.bidirectional,
            batch_first=True,
            dropout=0.3 if shape.lstm_layers > 1 else 0.0,
        )
        self.attention = TemporalAttention(shape.width, shape.num_heads, shape.max_time)
        self.dropout = nn.Dropout(0.5)
        self.fc1 = nn.Linear(shape.width, shape.fc_hidden)
        self.activation = ACTIVATIONS[shape.activation]()
        self.fc2 = nn.Linear(shape.fc_hidden, 2)

    def temporal(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, 2]`` from pooled features ``[batch, time, 2048]``."""
        encoded, _ = self.lstm(features)
        pooled = self.attention(encoded).mean(dim=1)
        return self.fc2(self.dropout(self.activation(self.fc1(self.dropout(pooled)))))

    def original_head(self, features: torch.Tensor) -> torch.Tensor:
        """The original's computation from pooled features (here identical to ``temporal``)."""
        return self.temporal(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.original_head(pooled_features(self.feature_extractor, x))


class LegacyDetector(nn.Module):
    """Family "legacy": ResNeXt50 (112 px) → LSTM → mean → linear.

    The served application built its LSTM without ``batch_first`` and fed it ``[batch, time,
    2048]`` anyway, so it runs over the *batch* axis: at batch 1 (how the original ran) every
    frame is one independent LSTM step. ``forward`` keeps that exactly; ``temporal`` gives each
    clip its batch-1 result even when several clips are stacked, which is what a dynamically
    batched server needs. With ``batch_first`` (another of the original's definitions) the LSTM
    runs over time, per clip, and both are the same computation.
    """

    family = "legacy"

    def __init__(self, shape: LegacyShape = LegacyShape()) -> None:
        super().__init__()
        self.shape = shape
        self.model = resnext_trunk()
        self.lstm = nn.LSTM(
            FEATURE_DIM,
            shape.hidden_size,
            shape.num_layers,
            bias=shape.bias,
            bidirectional=shape.bidirectional,
            batch_first=shape.batch_first,
        )
        directions = 2 if shape.bidirectional else 1
        self.linear = nn.Linear(shape.hidden_size * directions, 2)

    def temporal(self, features: torch.Tensor) -> torch.Tensor:
        """Per-clip batch-1 semantics: all frames of all clips as one length-1 LSTM sequence."""
        if self.shape.batch_first:
            return self.original_head(features)
        batch, time = features.shape[0], features.shape[1]
        stepped, _ = self.lstm(features.reshape(1, batch * time, FEATURE_DIM))
        return self.linear(stepped.reshape(batch, time, -1).mean(dim=1))

    def original_head(self, features: torch.Tensor) -> torch.Tensor:
        """The original computation, axis quirk included (per clip only at batch 1, as it was used)."""
        stepped, _ = self.lstm(features)
        return self.linear(stepped.mean(dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.original_head(pooled_features(self.model, x))


Detector = AttentionDetector | LegacyDetector


def pooled_features(trunk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``[batch, time, 3, H, W]`` normalised frames → ``[batch, time, 2048]``."""
    batch, time = x.shape[0], x.shape[1]
    feature_map = trunk(x.reshape(batch * time, *x.shape[2:]))
    return F.adaptive_avg_pool2d(feature_map, 1).reshape(batch, time, FEATURE_DIM)


def trunk_name(detector: Detector) -> str:
    return "feature_extractor" if isinstance(detector, AttentionDetector) else "model"


def trunk_of(detector: Detector) -> nn.Module:
    return getattr(detector, trunk_name(detector))


def without_trunk(detector: Detector) -> Detector:
    """A shallow view of ``detector`` sharing every weight but the CNN trunk, which it drops."""
    view = copy.copy(detector)
    view._modules = {name: module for name, module in detector._modules.items() if name != trunk_name(detector)}
    return view


class Backbone(nn.Module):
    """Serving half 1: uint8 RGB crops ``[n, S, S, 3]`` → features ``[n, 2048]``.

    Channel order, scaling and normalisation of the model's preprocessing profile live in the
    graph, so that clients send 4x fewer bytes than float32, always in one format (RGB), and
    cannot get the normalisation wrong.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, detector: Detector, profile: PreprocessingProfile | None = None) -> None:
        super().__init__()
        profile = profile or default_profile(detector.family)
        self.trunk = trunk_of(detector)
        self.to_bgr = profile.channel_order == "bgr"
        self.register_buffer("mean", torch.tensor(profile.mean).reshape(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(profile.std).reshape(1, 3, 1, 1) * 255.0)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        pixels = faces.permute(0, 3, 1, 2).to(torch.float32)
        if self.to_bgr:
            pixels = pixels.flip(1)
        feature_map = self.trunk((pixels - self.mean) / self.std)
        return F.adaptive_avg_pool2d(feature_map, 1).flatten(1)


class TemporalHead(nn.Module):
    """Serving half 2: features ``[batch, time, 2048]`` → (probabilities, logits), each ``[batch, 2]``.

    Index 0 = FAKE, 1 = REAL, as the original. Holds the detector without its trunk, so that a
    traced or exported head carries only the temporal weights.
    """

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = without_trunk(detector)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.detector.temporal(features)
        return torch.softmax(logits, dim=-1), logits


def normalise(faces_uint8: torch.Tensor, profile: PreprocessingProfile | None = None) -> torch.Tensor:
    """Reference preprocessing outside any graph: channel order, [0, 1], mean/std, CHW (SEED_MODEL.md)."""
    profile = profile or default_profile("attention")
    pixels = faces_uint8.to(torch.float32) / 255.0
    if profile.channel_order == "bgr":
        pixels = pixels.flip(-1)
    mean, std = torch.tensor(profile.mean), torch.tensor(profile.std)
    return ((pixels - mean) / std).movedim(-1, -3)
