"""The original service's way of analyzing a video, rebuilt from SEED_MODEL.md and the fidelity issue.

Two uses: the end-to-end benchmark's baseline (its speed), and the tests' reference for fidelity
(its answers). So it does what the original did, step by step, with the original's own tools:
OpenCV seeks to each of the 30 sampled frames (``int(n*i/30)``), MediaPipe on the contiguous
BGR→RGB frame, else a Haar cascade (loaded again on every call, as the original did) on the
full-resolution grey frame, else a 112x112 centre crop; the crop through torchvision's
``ToPILImage → Resize((S, S)) → ToTensor → Normalize(ImageNet)``; each frame scored alone as a
one-frame sequence by PyTorch eager; the verdict the majority label of sample positions 0, 10, 20,
29 (ties: the first seen), the confidence the mean of their winning-class probabilities.
The legacy application instead fed the whole frame, ``cv2.resize`` to 112, BGR, / 255.

One difference it cannot avoid: the original used MediaPipe's old ``solutions`` API, which cannot be
installed beside today's stack (NOTES.md); the same BlazeFace short-range model runs here through
the Tasks API, which reports pixel boxes itself.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
import torch
from mediapipe.tasks.python import BaseOptions, vision
from torchvision import transforms

from export.checkpoint import LoadedModel
from model_contract import LABELS
from model_contract.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from preprocess_service.face_model import DEFAULT_PATH

NUM_FRAMES = 30
DISPLAY_POSITIONS = (0, 10, 20, 29)  # of the 30 sampled indices: the frames shown and voted with

Box = tuple[int, int, int, int]


@dataclass
class OriginalFrame:
    frame_index: int
    box: Box
    detector: str  # "mediapipe", "haar" or "centre" (the original's no-face fallback)
    p_fake: float


@dataclass
class OriginalResult:
    frames: list[OriginalFrame]  # one per sampled position (30), in order
    result: str  # the original /predict/ verdict (majority of the 4 display frames)
    confidence: float
    sequence_p_fake: float | None  # the temporal model over all the faces (not something the original did)


class OriginalPipeline:
    def __init__(self, model: LoadedModel, face_model: Path = DEFAULT_PATH, legacy_app: bool = False) -> None:
        self.model = model
        self.legacy_app = legacy_app  # the legacy application: whole frame, cv2.resize, BGR, / 255
        self.detector = vision.FaceDetector.create_from_options(
            vision.FaceDetectorOptions(
                base_options=BaseOptions(model_asset_path=str(face_model)), min_detection_confidence=0.5
            )
        )
        size = model.input_size
        self.transform = transforms.Compose(
            [
                transforms.ToPILImage(),
                transforms.Resize((size, size)),
                transforms.ToTensor(),
                transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
            ]
        )

    def close(self) -> None:
        self.detector.close()

    def face_box(self, bgr: np.ndarray) -> tuple[Box, str]:
        height, width = bgr.shape[:2]
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)  # a fresh, contiguous array
        found = self.detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=rgb))
        boxes = [
            (d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width, d.bounding_box.height)
            for d in found.detections
        ]
        detector = "mediapipe"
        if not boxes:  # the original reloaded the cascade on every call
            cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
            boxes, detector = [tuple(int(v) for v in b) for b in cascade.detectMultiScale(gray, 1.1, 5)], "haar"
        if boxes:
            x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
            left, top = max(x, 0), max(y, 0)
            right, bottom = min(x + w, width), min(y + h, height)
            if right > left and bottom > top:
                return (left, top, right - left, bottom - top), detector
        return (max(width // 2 - 56, 0), max(height // 2 - 56, 0), min(112, width), min(112, height)), "centre"

    def model_input(self, bgr: np.ndarray, box: Box) -> torch.Tensor:
        if self.legacy_app:
            size = self.model.input_size
            return torch.from_numpy(cv2.resize(bgr, (size, size)).astype(np.float32) / 255.0).permute(2, 0, 1)
        x, y, w, h = box
        return self.transform(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[y : y + h, x : x + w])

    def analyze(self, path: Path, with_sequence: bool = False) -> OriginalResult:
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        frames, inputs = [], []
        for i in range(NUM_FRAMES):
            index = int(count * i / NUM_FRAMES)
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, bgr = capture.read()
            if not ok:
                continue
            box, detector = self.face_box(bgr)
            inputs.append(self.model_input(bgr, box))
            with torch.inference_mode():
                logits = self.model.detector(inputs[-1][None, None])
            frames.append(OriginalFrame(index, box, detector, float(torch.softmax(logits, -1)[0, 0])))
        capture.release()
        shown = [frames[i] for i in DISPLAY_POSITIONS if i < len(frames)]
        labels = [LABELS[0] if frame.p_fake >= 0.5 else LABELS[1] for frame in shown]
        confidence = float(np.mean([100 * max(f.p_fake, 1 - f.p_fake) for f in shown])) if shown else 50.0
        sequence = None
        if with_sequence:
            faced = [tensor for tensor, frame in zip(inputs, frames, strict=True) if frame.detector != "centre"]
            with torch.inference_mode():
                sequence = float(torch.softmax(self.model.detector(torch.stack(faced)[None]), -1)[0, 0])
        return OriginalResult(frames, Counter(labels).most_common(1)[0][0] if labels else "REAL", confidence, sequence)
