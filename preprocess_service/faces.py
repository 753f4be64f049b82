"""Find the largest face in each sampled frame and cut it out at the model's input size.

MediaPipe's BlazeFace short-range detector first (model 0 of the seed, min confidence 0.5), the
OpenCV Haar cascade as fallback. Both hold per-thread state (neither is documented thread-safe),
so each worker thread of the pool gets its own instances, made once and reused.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision

from preprocess_service.face_model import verified

Box = tuple[int, int, int, int]  # x, y, width, height in pixels
HAAR_MAX_SIDE = 320  # Haar on a downscaled frame: ~4x faster and far fewer false boxes (NOTES.md)


@dataclass
class FaceCrops:
    positions: list[int]  # frame positions (keys of SampledVideo.frames) that hold a face, in order
    crops: np.ndarray  # [len(positions), S, S, 3] uint8 RGB
    boxes: dict[int, Box]
    detector_used: dict[int, str]  # "mediapipe" or "haar", per position


def _largest(boxes: list[Box]) -> Box | None:
    return max(boxes, key=lambda box: box[2] * box[3]) if boxes else None


def _clamp(box: Box, width: int, height: int, margin: float) -> Box | None:
    x, y, w, h = box
    dx, dy = int(round(w * margin)), int(round(h * margin))
    left, top = max(x - dx, 0), max(y - dy, 0)
    right, bottom = min(x + w + dx, width), min(y + h + dy, height)
    return (left, top, right - left, bottom - top) if right > left and bottom > top else None


class FaceDetector:
    """Largest-face boxes from BlazeFace, then Haar; one instance serves the whole app."""

    def __init__(self, model_path: Path, min_confidence: float = 0.5, margin: float = 0.0) -> None:
        self._options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(verified(model_path))),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_confidence,
        )
        self._margin = margin
        self._local = threading.local()
        self._all_mediapipe: list = []
        self._lock = threading.Lock()
        self._mediapipe()  # fail at start-up, not on the first request, if the model is unusable

    def _mediapipe(self):
        detector = getattr(self._local, "mediapipe", None)
        if detector is None:
            detector = vision.FaceDetector.create_from_options(self._options)
            self._local.mediapipe = detector
            with self._lock:
                self._all_mediapipe.append(detector)
        return detector

    def _haar(self) -> cv2.CascadeClassifier:
        cascade = getattr(self._local, "haar", None)
        if cascade is None:
            cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))
            self._local.haar = cascade
        return cascade

    def detect_mediapipe(self, rgb: np.ndarray) -> Box | None:
        result = self._mediapipe().detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        boxes = [(d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width, d.bounding_box.height)
                 for d in result.detections]
        return _largest(boxes)

    def detect_haar(self, rgb: np.ndarray) -> Box | None:
        scale = min(1.0, HAAR_MAX_SIDE / max(rgb.shape[:2]))
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        found = self._haar().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
        box = _largest([tuple(int(v) for v in b) for b in found])
        return tuple(int(round(v / scale)) for v in box) if box else None

    def find(self, rgb: np.ndarray) -> tuple[Box, str] | None:
        height, width = rgb.shape[:2]
        for name, detect in (("mediapipe", self.detect_mediapipe), ("haar", self.detect_haar)):
            box = detect(rgb)
            box = _clamp(box, width, height, self._margin) if box else None
            if box:
                return box, name
        return None

    def crop_faces(self, frames: dict[int, np.ndarray], size: int) -> FaceCrops:
        """Crops for every frame with a face; frames without one are left out, never centre-filled."""
        positions, crops, boxes, used = [], [], {}, {}
        for position in sorted(frames):
            found = self.find(frames[position])
            if found is None:
                continue
            (x, y, w, h), name = found
            face = frames[position][y:y + h, x:x + w]
            crops.append(cv2.resize(face, (size, size), interpolation=cv2.INTER_LINEAR))
            positions.append(position)
            boxes[position], used[position] = (x, y, w, h), name
        stacked = np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)
        return FaceCrops(positions, stacked, boxes, used)

    def close(self) -> None:
        with self._lock:
            for detector in self._all_mediapipe:
                detector.close()
            self._all_mediapipe.clear()
