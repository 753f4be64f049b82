"""analyse(path) → Analysis: decode → faces → one backbone pass → temporal head → aggregate.

CPU stages (decode, face detection) run in a bounded thread pool so the event loop stays free.
Per video there is exactly one backbone call over its distinct face crops; the verdict is the
temporal head over the whole face sequence, the per-frame scores the same head over each frame
alone (one batched call of one-frame sequences). The two head calls run concurrently.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from preprocess_service.errors import NoFaceDetected
from preprocess_service.faces import FaceCrops, FaceDetector
from preprocess_service.inference import InferenceBackend, ModelInfo
from preprocess_service.settings import Settings
from preprocess_service.video import SampledVideo, read_video

LABELS = ("FAKE", "REAL")  # index 0 = FAKE, as the exported models


@dataclass
class FrameScore:
    frame_index: int
    frame_time_sec: float
    p_fake: float | None  # None: no face in this frame

    @property
    def label(self) -> str:
        if self.p_fake is None:
            return "NO_FACE"
        return LABELS[0] if self.p_fake >= 0.5 else LABELS[1]

    @property
    def confidence(self) -> float | None:
        """The seed's convention: the winning class's probability x 100."""
        return None if self.p_fake is None else round(100 * max(self.p_fake, 1 - self.p_fake), 2)


@dataclass
class Analysis:
    video: SampledVideo
    faces: FaceCrops
    frames: list[FrameScore]  # one per sampled index (N), in order
    p_fake: float
    timings: dict[str, float]
    model: ModelInfo

    @property
    def label(self) -> str:
        return LABELS[0] if self.p_fake >= 0.5 else LABELS[1]

    @property
    def confidence(self) -> float:
        return round(100 * max(self.p_fake, 1 - self.p_fake), 2)


class Analyzer:
    def __init__(self, settings: Settings, detector: FaceDetector, backend: InferenceBackend, pool: ThreadPoolExecutor):
        self._settings, self._detector, self._backend, self._pool = settings, detector, backend, pool

    def _read(self, path: Path) -> SampledVideo:
        s = self._settings
        return read_video(path, s.num_frames, s.min_frames, s.max_video_pixels, s.max_video_frames)

    def _faces(self, video: SampledVideo, size: int) -> FaceCrops:
        return self._detector.crop_faces({position: frame.rgb for position, frame in video.frames.items()}, size)

    async def analyse(self, path: Path, model: ModelInfo) -> Analysis:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        video = await loop.run_in_executor(self._pool, self._read, path)
        decoded = time.perf_counter()
        faces = await loop.run_in_executor(self._pool, self._faces, video, model.input_size)
        if not faces.positions:
            raise NoFaceDetected(f"no face was found in any of the {len(video.frames)} sampled frames")
        found = time.perf_counter()

        features = await self._backend.features(faces.crops)  # one pass over distinct crops
        row_of = {position: row for row, position in enumerate(faces.positions)}
        sequence = [row_of[i] for i in video.sample_indices if i in row_of]  # repeats kept, as the seed fed them
        video_probabilities, frame_probabilities = await asyncio.gather(
            self._backend.probabilities(features[sequence][None]),
            self._backend.probabilities(features[:, None, :]),
        )
        inferred = time.perf_counter()

        p_fake_of = {position: float(frame_probabilities[row, 0]) for position, row in row_of.items()}
        frames = [FrameScore(i, video.frames[i].frame_time_sec, p_fake_of.get(i)) for i in video.sample_indices]
        timings = {"decode": decoded - started, "faces": found - decoded, "inference": inferred - found,
                   "total": inferred - started}
        return Analysis(video, faces, frames, float(video_probabilities[0, 0]), timings, model)


def display_positions(analysis: Analysis, count: int) -> list[int]:
    """``count`` evenly spaced frames among those with a face (the seed showed 4)."""
    with_face = analysis.faces.positions
    if not with_face or count <= 0:
        return []
    return sorted({with_face[int(len(with_face) * i / count)] for i in range(min(count, len(with_face)))})
