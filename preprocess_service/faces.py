"""Find the largest face in each sampled frame and cut out the model's input as its profile says.

The crops are the ones the original service would have made for the same frame, because a
checkpoint only gives the answers it was trained to give on those: MediaPipe's BlazeFace
short-range detector (model 0 of the seed, min confidence 0.5) on the full contiguous RGB frame,
the OpenCV Haar cascade as fallback on the full-resolution grey frame, the largest box clamped to
the frame, and the resize the profile names (the current family's: Pillow bilinear, which
antialiases when shrinking, as torchvision's ``Resize`` on a PIL image did). Both detectors hold
per-thread state (neither is documented thread-safe), so each worker thread of the pool gets its
own instances, made once and reused.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from mediapipe.tasks.python import BaseOptions, vision
from PIL import Image

from model_contract import PreprocessingProfile
from preprocess_service.face_model import verified

Box = tuple[int, int, int, int]  # x, y, width, height in pixels


@dataclass
class FaceCrops:
    positions: list[int]  # frame positions (keys of SampledVideo.frames) the model scores, in order
    crops: np.ndarray  # [len(positions), S, S, 3] uint8 RGB: faces, or whole frames for full_frame profiles
    boxes: dict[int, Box]  # the largest face per position where one was found
    detector_used: dict[int, str]  # "mediapipe" or "haar", per position with a box


def resize(image: np.ndarray, size: int, method: str) -> np.ndarray:
    """``pil_bilinear`` is torchvision's ``Resize((S, S))`` on a PIL image exactly (Pillow's bilinear
    filter widens with the scale, i.e. antialiases); ``cv2_linear`` samples 4 pixels, no antialias."""
    if method == "pil_bilinear":
        return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


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

    def __init__(
        self, model_path: Path, min_confidence: float = 0.5, margin: float = 0.0, haar_max_side: int = 0
    ) -> None:
        self._options = vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(verified(model_path))),
            running_mode=vision.RunningMode.IMAGE,
            min_detection_confidence=min_confidence,
        )
        self._margin = margin
        self._haar_max_side = haar_max_side  # 0: full frame, as the original; > 0: faster, other boxes
        self._local = threading.local()
        self._all_mediapipe: list = []
        self._lock = threading.Lock()
        self._mediapipe()  # fail at start-up, not on the first request, if the model is unusable

    def _mediapipe(self) -> vision.FaceDetector:
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
            cascade = cv2.CascadeClassifier(str(Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"))  # type: ignore[attr-defined]
            self._local.haar = cascade
        return cascade

    def detect_mediapipe(self, rgb: np.ndarray) -> Box | None:
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))  # it ignores strides
        result = self._mediapipe().detect(image)
        boxes = [
            (d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width, d.bounding_box.height)
            for d in result.detections
        ]
        return _largest(boxes)

    def detect_haar(self, rgb: np.ndarray) -> Box | None:
        scale = min(1.0, self._haar_max_side / max(rgb.shape[:2])) if self._haar_max_side else 1.0
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:  # never below one pixel a side (a 4000x2 frame)
            size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
            gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        found = self._haar().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5)
        box = _largest([(int(x), int(y), int(w), int(h)) for x, y, w, h in found])
        if box is None:
            return None
        x, y, w, h = (int(round(v / scale)) for v in box)
        return x, y, w, h

    def find(self, rgb: np.ndarray) -> tuple[Box, str] | None:
        height, width = rgb.shape[:2]
        for name, detect in (("mediapipe", self.detect_mediapipe), ("haar", self.detect_haar)):
            box = detect(rgb)
            box = _clamp(box, width, height, self._margin) if box else None
            if box:
                return box, name
        return None

    def crop_one(
        self, frame: np.ndarray, profile: PreprocessingProfile
    ) -> tuple[tuple[Box, str] | None, np.ndarray | None]:
        """The largest face (box, detector) and the model input per the profile. ``face``: no face, no
        input — never a centre crop (the original's fallback, which its own notes asked to remove).
        ``full_frame``: every frame is an input; faces are still looked for, as evidence to show."""
        found = self.find(frame)
        if profile.crop == "full_frame":
            return found, resize(frame, profile.size, profile.resize)
        if found is None:
            return None, None
        x, y, w, h = found[0]
        return found, resize(frame[y : y + h, x : x + w], profile.size, profile.resize)

    def crop(self, frames: dict[int, np.ndarray], profile: PreprocessingProfile) -> FaceCrops:
        collector = CropCollector(self, profile)
        for position in sorted(frames):
            collector.take(position, frames[position])
        return collector.result()

    def close(self) -> None:
        with self._lock:
            for detector in self._all_mediapipe:
                detector.close()
            self._all_mediapipe.clear()


class CropCollector:
    """A FrameSink (video.py): crops each frame as it is decoded and keeps only the frames asked for.

    With an executor, faces are found on another thread while the next frames decode (PyAV,
    MediaPipe and OpenCV all release the GIL), at most ``max_pending`` frames ahead, so memory stays
    bounded by a few frames. The executor must not be the one decoding: a decoder waiting for its
    own queued face work would deadlock a full pool.

    ``on_crop(position, crop)`` is called with each model input as soon as it is cut, on the thread
    that cut it (a face-pool thread, in any order): how the pipeline starts the backbone on the first
    crops while later frames still decode. It must be quick and thread-safe (the pipeline's hands the
    crop to the event loop with ``call_soon_threadsafe``); an error it raises fails the analysis.
    """

    def __init__(
        self,
        detector: FaceDetector,
        profile: PreprocessingProfile,
        keep: set[int] | None = None,
        keep_positions: Callable[[list[int]], set[int]] | None = None,
        executor: Executor | None = None,
        max_pending: int = 4,
        on_crop: Callable[[int, np.ndarray], None] | None = None,
    ) -> None:
        self._detector, self._profile = detector, profile
        self._keep, self._keep_positions = keep or set(), keep_positions
        self._executor, self._max_pending = executor, max_pending
        self._on_crop = on_crop
        self._pending: deque[Future[None]] = deque()
        # (position, crop) in one append: two face threads of one collector appending a position and
        # its crop to two lists could interleave and pair a position with another frame's crop
        self._cut_crops: list[tuple[int, np.ndarray]] = []
        self._boxes: dict[int, Box] = {}
        self._used: dict[int, str] = {}

    def begin(self, sample_indices: list[int]) -> None:
        if self._keep_positions is not None:
            self._keep = self._keep_positions(sample_indices)

    def _cut(self, position: int, rgb: np.ndarray) -> None:
        found, crop = self._detector.crop_one(rgb, self._profile)
        if found is not None:
            self._boxes[position], self._used[position] = found
        if crop is not None:
            self._cut_crops.append((position, crop))
            if self._on_crop is not None:
                self._on_crop(position, crop)

    def take(self, position: int, rgb: np.ndarray) -> bool:
        if self._executor is None:
            self._cut(position, rgb)
        else:
            self._pending.append(self._executor.submit(self._cut, position, rgb))
            while len(self._pending) > self._max_pending:
                self._pending.popleft().result()
        return position in self._keep

    def result(self) -> FaceCrops:
        """Every crop, in frame order, once the face work still queued is done (its errors raised here)."""
        while self._pending:
            self._pending.popleft().result()
        cut = sorted(self._cut_crops, key=lambda item: item[0])
        size = self._profile.size
        stacked = np.stack([crop for _, crop in cut]) if cut else np.zeros((0, size, size, 3), np.uint8)
        return FaceCrops([position for position, _ in cut], stacked, self._boxes, self._used)

    def cancel(self) -> None:
        """An analysis that failed while decoding: drop face work not yet started."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
