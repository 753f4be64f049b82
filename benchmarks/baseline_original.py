"""The original service's way of analysing a video, rebuilt from SEED_MODEL.md, as the benchmark's baseline.

What it did, kept on purpose (these are the faults the new service removes): OpenCV seeks per
sampled frame; MediaPipe per frame with a Haar cascade loaded again on every call when it finds
nothing; PyTorch eager on each frame as its own one-frame sequence (the temporal model never sees
time). It uses the same face model and the same weights as the service, so only the way differs.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
import torch
from mediapipe.tasks.python import BaseOptions, vision

from export.architectures import normalise
from export.checkpoint import LoadedModel
from preprocess_service.face_model import DEFAULT_PATH

NUM_FRAMES = 30


class OriginalPipeline:
    def __init__(self, model: LoadedModel, face_model: Path = DEFAULT_PATH) -> None:
        self.model = model
        self.detector = vision.FaceDetector.create_from_options(vision.FaceDetectorOptions(
            base_options=BaseOptions(model_asset_path=str(face_model)), min_detection_confidence=0.5))

    def close(self) -> None:
        self.detector.close()

    def _face_box(self, rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        found = self.detector.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb)))
        boxes = [(d.bounding_box.origin_x, d.bounding_box.origin_y, d.bounding_box.width, d.bounding_box.height)
                 for d in found.detections]
        if not boxes:  # the original reloaded the cascade on every call
            cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            boxes = [tuple(b) for b in cascade.detectMultiScale(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 1.1, 5)]
        return max(boxes, key=lambda b: b[2] * b[3]) if boxes else None

    def analyse(self, path: Path) -> float:
        """Mean p_fake over frames, each frame classified alone, as the original."""
        capture = cv2.VideoCapture(str(path))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        size = self.model.input_size
        scores = []
        for i in range(NUM_FRAMES):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(count * i / NUM_FRAMES))
            ok, bgr = capture.read()
            if not ok:
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            box = self._face_box(rgb)
            if box is None:
                h, w = rgb.shape[:2]  # the original's centre-crop fallback
                box = (max(w // 2 - 56, 0), max(h // 2 - 56, 0), 112, 112)
            x, y, bw, bh = box
            face = cv2.resize(rgb[max(y, 0):y + bh, max(x, 0):x + bw], (size, size))
            with torch.inference_mode():
                logits = self.model.detector(normalise(torch.from_numpy(face))[None, None])
            scores.append(float(torch.softmax(logits, -1)[0, 0]))
        capture.release()
        return float(np.mean(scores)) if scores else 0.5
