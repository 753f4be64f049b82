"""The two checkpoint families of SEED_MODEL.md, written so users' files load with strict=True.

Every parameter name here is part of the contract with users' ``checkpoint.pth`` files: rename
nothing. Besides the full models (used to load checkpoints and as the parity reference), this
module defines the two halves that serving is built on (backbone and temporal head), which share
the full model's submodules and so its weights.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import resnext50_32x4d

FEATURE_DIM = 2048
MAX_FRAMES = 200  # rows of the attention family's positional table
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


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
    def __init__(self, dim: int, max_len: int = MAX_FRAMES) -> None:
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
        if dim % num_heads:
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
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.positional_encoding = PositionalEncoding(dim)
        self.multihead_attn = SelfAttention(dim, num_heads)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        encoded = self.positional_encoding(x)
        return self.norm(encoded + self.multihead_attn(encoded))


class AttentionDetector(nn.Module):
    """Family "attention": ResNeXt50 → BiLSTM(512 x 2 layers) → self-attention → mean → MLP."""

    input_size = 180

    def __init__(self, num_heads: int = 4, activation: str = "gelu") -> None:
        super().__init__()
        self.feature_extractor = resnext_trunk()
        self.lstm = nn.LSTM(FEATURE_DIM, 512, num_layers=2, bidirectional=True, batch_first=True, dropout=0.3)
        self.attention = TemporalAttention(1024, num_heads)
        self.dropout = nn.Dropout(0.5)
        self.fc1 = nn.Linear(1024, 512)
        self.activation = ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(512, 2)

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


@dataclass(frozen=True)
class LegacyLSTMShape:
    """The legacy LSTM's constructor arguments, read from the checkpoint's keys (the bias trap)."""

    hidden_size: int = 2048
    num_layers: int = 1
    bidirectional: bool = True
    bias: bool = True


class LegacyDetector(nn.Module):
    """Family "legacy": ResNeXt50 (112 px) → LSTM without ``batch_first`` → mean → linear.

    The LSTM is fed ``[batch, time, 2048]`` although it expects time first, so it runs over the
    *batch* axis. At batch 1 (how the original ran) every frame is one independent LSTM step.
    ``forward`` keeps that exactly; ``temporal`` below gives each clip its batch-1 result even
    when several clips are stacked, which is what a dynamically batched server needs.
    """

    input_size = 112

    def __init__(self, lstm_shape: LegacyLSTMShape = LegacyLSTMShape()) -> None:
        super().__init__()
        self.model = resnext_trunk()
        self.lstm = nn.LSTM(
            FEATURE_DIM,
            lstm_shape.hidden_size,
            lstm_shape.num_layers,
            bias=lstm_shape.bias,
            bidirectional=lstm_shape.bidirectional,
        )
        directions = 2 if lstm_shape.bidirectional else 1
        self.linear = nn.Linear(lstm_shape.hidden_size * directions, 2)

    def temporal(self, features: torch.Tensor) -> torch.Tensor:
        """Per-clip batch-1 semantics: all frames of all clips as one length-1 LSTM sequence."""
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
    """Serving half 1: uint8 RGB face crops ``[n, S, S, 3]`` → features ``[n, 2048]``.

    Casting, scaling and ImageNet normalisation live in the graph so that clients send 4x fewer
    bytes than float32 and cannot get the normalisation wrong.
    """

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.trunk = trunk_of(detector)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1) * 255.0)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        pixels = faces.permute(0, 3, 1, 2).to(torch.float32)
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


def normalise(faces_uint8: torch.Tensor) -> torch.Tensor:
    """Reference preprocessing of SEED_MODEL.md (scale, ImageNet mean/std, CHW), outside any graph."""
    pixels = faces_uint8.to(torch.float32) / 255.0
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    return ((pixels - mean) / std).movedim(-1, -3)
