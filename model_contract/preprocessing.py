"""Preprocessing profiles: how a frame becomes the model's input, chosen once at export.

A checkpoint gives the answers it was trained to give only when its frames are prepared the way
they were in training, and that is the user's knowledge, not something the weights show. So the
profile is picked at export (``deepfake-export --preprocessing NAME``), written into the model's
parameters, and the service applies whatever the served model says, whatever the backend.

The work is split where it is cheapest and hardest to get wrong: the service cuts (face box or
whole frame) and resizes with the profile's method, and sends uint8 RGB ``[n, S, S, 3]``; the
backbone graph itself puts the channels in the profile's order, scales and normalises.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

Crop = Literal["face", "full_frame"]
Resize = Literal["pil_bilinear", "cv2_linear"]
ChannelOrder = Literal["rgb", "bgr"]
Normalisation = Literal["imagenet", "none"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PARAMETER_PREFIX = "preprocessing"  # parameters "preprocessing", "preprocessing.crop", ...


@dataclass(frozen=True)
class PreprocessingProfile:
    name: str
    crop: Crop  # the largest face's box, or the whole upright frame
    size: int  # the model's square input side
    resize: Resize  # pil_bilinear: torchvision's Resize on a PIL image (antialiased); cv2_linear: no antialias
    channel_order: ChannelOrder  # order the network saw in training (the wire format is always RGB)
    normalisation: Normalisation  # after scaling to [0, 1]: ImageNet mean/std, or nothing

    @property
    def mean(self) -> tuple[float, float, float]:
        """Per channel, in the network's channel order."""
        values = IMAGENET_MEAN if self.normalisation == "imagenet" else (0.0, 0.0, 0.0)
        return (values[2], values[1], values[0]) if self.channel_order == "bgr" else values

    @property
    def std(self) -> tuple[float, float, float]:
        values = IMAGENET_STD if self.normalisation == "imagenet" else (1.0, 1.0, 1.0)
        return (values[2], values[1], values[0]) if self.channel_order == "bgr" else values

    def to_parameters(self) -> dict[str, str]:
        fields = asdict(self)
        return {PARAMETER_PREFIX: fields.pop("name"), **{f"{PARAMETER_PREFIX}.{k}": str(v) for k, v in fields.items()}}

    @classmethod
    def from_parameters(cls, parameters: dict[str, str], fallback_size: int) -> PreprocessingProfile:
        """What the served model recorded; models exported before profiles existed get the default
        for their input size, which is what they were always served with."""
        name = parameters.get(PARAMETER_PREFIX)
        if name is None:
            return PROFILES[LEGACY_DEFAULT if fallback_size == 112 else ATTENTION_DEFAULT]
        value = {
            key.removeprefix(f"{PARAMETER_PREFIX}."): v
            for key, v in parameters.items()
            if key.startswith(f"{PARAMETER_PREFIX}.")
        }
        return cls(
            name=name,
            crop=_one_of(value["crop"], get_args(Crop)),
            size=int(value["size"]),
            resize=_one_of(value["resize"], get_args(Resize)),
            channel_order=_one_of(value["channel_order"], get_args(ChannelOrder)),
            normalisation=_one_of(value["normalisation"], get_args(Normalisation)),
        )

    def describe(self) -> dict[str, str | int]:
        return asdict(self)


def _one_of(value: str, allowed: tuple[Any, ...]) -> Any:
    """A recorded value this version understands; anything else means the model is newer than the service."""
    if value not in allowed:
        raise ValueError(f"unknown preprocessing value {value!r}; expected one of {', '.join(allowed)}")
    return value


ATTENTION_DEFAULT = "attention-default"
LEGACY_DEFAULT = "legacy-default"
ORIGINAL_LEGACY_APP = "original-legacy-app"

PROFILES: dict[str, PreprocessingProfile] = {
    # The served application of the current family: torchvision ToPILImage -> Resize((180, 180)) ->
    # ToTensor -> Normalize(ImageNet), on the largest face.
    ATTENTION_DEFAULT: PreprocessingProfile(ATTENTION_DEFAULT, "face", 180, "pil_bilinear", "rgb", "imagenet"),
    # The same at 112 px, for legacy checkpoints trained on face crops.
    LEGACY_DEFAULT: PreprocessingProfile(LEGACY_DEFAULT, "face", 112, "pil_bilinear", "rgb", "imagenet"),
    # The legacy application itself: the whole frame, cv2.resize to 112, BGR, / 255, no normalisation.
    ORIGINAL_LEGACY_APP: PreprocessingProfile(ORIGINAL_LEGACY_APP, "full_frame", 112, "cv2_linear", "bgr", "none"),
}


def default_profile(family: str) -> PreprocessingProfile:
    return PROFILES[LEGACY_DEFAULT if family == "legacy" else ATTENTION_DEFAULT]
