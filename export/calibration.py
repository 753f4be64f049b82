"""Face crops for calibrating and checking reduced precisions, made by the service's own path.

Quantisation ranges are only as good as the data they are measured on, so they come from real
videos decoded, sampled and cropped exactly as ``/predict/`` does (PyAV, MediaPipe then Haar, the
model's preprocessing profile), never from random tensors. Videos are split into a calibration
set and a held-out set, so the parity check measures videos the quantiser never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_contract import PreprocessingProfile

VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}
HOLD_OUT_EVERY = 3  # every third video (sorted by name) is held out for the parity check


class CalibrationError(Exception):
    """Calibration videos missing, unreadable or without faces."""


@dataclass(frozen=True)
class CalibrationSet:
    calibration: list[np.ndarray]  # one [n, S, S, 3] uint8 array of crops per calibration video
    held_out: list[np.ndarray]  # the same, per held-out video
    calibration_names: list[str]
    held_out_names: list[str]

    @property
    def calibration_crops(self) -> np.ndarray:
        return np.concatenate(self.calibration)


def videos_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise CalibrationError(f"calibration videos: {folder} is not a folder")
    videos = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if len(videos) < 2:
        raise CalibrationError(
            f"calibration videos: {folder} holds {len(videos)} video(s); at least 2 are needed"
            " (some calibrate, the others are held out for the parity check)"
        )
    return videos


def face_crops(videos: list[Path], profile: PreprocessingProfile, frames_per_video: int = 30) -> list[np.ndarray]:
    """The model inputs the service makes from each video: its decoder, sampler and face path."""
    try:
        from preprocess_service.face_model import DEFAULT_PATH
        from preprocess_service.faces import FaceDetector
        from preprocess_service.video import read_video
    except ImportError as error:  # the export extra alone has no video or face libraries
        raise CalibrationError(
            f"calibration needs the serving dependencies (pip install '.[serve]'): {error}"
        ) from error

    detector = FaceDetector(DEFAULT_PATH)
    try:
        crops = []
        for video in videos:
            try:
                sampled = read_video(video, frames_per_video)
            except Exception as error:  # the service's own refusals: unreadable, too large, too short
                raise CalibrationError(f"calibration video {video.name}: {error}") from error
            frames = {i: frame.rgb for i, frame in sampled.frames.items() if frame.rgb is not None}
            crops.append(detector.crop(frames, profile).crops)
        return crops
    finally:
        detector.close()


def calibration_set(folder: Path, profile: PreprocessingProfile) -> CalibrationSet:
    videos = videos_in(folder)
    crops = face_crops(videos, profile)
    empty = [video.name for video, found in zip(videos, crops, strict=True) if len(found) == 0]
    if empty:
        raise CalibrationError(f"calibration videos without any face the service can find: {', '.join(empty)}")
    held = {index for index in range(len(videos)) if index % HOLD_OUT_EVERY == HOLD_OUT_EVERY - 1} or {len(videos) - 1}
    return CalibrationSet(
        calibration=[c for i, c in enumerate(crops) if i not in held],
        held_out=[c for i, c in enumerate(crops) if i in held],
        calibration_names=[v.name for i, v in enumerate(videos) if i not in held],
        held_out_names=[v.name for i, v in enumerate(videos) if i in held],
    )
