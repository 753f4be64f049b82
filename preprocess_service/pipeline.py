"""analyze(path) → Analysis: decode → crops → one backbone pass → temporal head → verdicts.

CPU stages (decode, face detection, crops) run in a bounded thread pool so the event loop stays
free. Per video there is exactly one backbone call over its distinct crops; the ``sequence``
verdict is the temporal head over the whole sequence, the per-frame scores the same head over each
frame alone (one batched call of one-frame sequences, as the original scored frames), and the
``original`` verdict is read off those. The two head calls run concurrently.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from model_contract.identity import ModelInfo, Rule
from preprocess_service import tracing
from preprocess_service.errors import BackendUnavailable, NoFaceDetected
from preprocess_service.faces import CropCollector, FaceCrops, FaceDetector
from preprocess_service.inference import InferenceBackend
from preprocess_service.metrics import Metrics
from preprocess_service.scoring import FrameScore, Verdict, original_verdict, sequence_verdict, spread_positions
from preprocess_service.settings import Settings
from preprocess_service.video import DecodeBudget, SampledVideo, read_video


def display_indices(sample_indices: list[int], count: int) -> list[int]:
    """The frames shown (the original's display frames: sample positions 0, 10, 20, 29 of 30 for 4),
    each once, in order: the one rule for what the answer shows and the images keep."""
    return sorted({sample_indices[i] for i in spread_positions(len(sample_indices), count)})


@dataclass
class Analysis:
    video: SampledVideo
    faces: FaceCrops
    frames: list[FrameScore]  # one per sampled index (N), in order
    verdicts: dict[Rule, Verdict]  # every rule, always
    rule: Rule  # the one that fills result / confidence / p_fake
    timings: dict[str, float]
    model: ModelInfo
    display: list[int]  # the frame indices shown (display_indices)

    @property
    def verdict(self) -> Verdict:
        return self.verdicts[self.rule]


@dataclass(frozen=True)
class DecodedVideo:
    """One pass of decoding and cutting: the samples, their crops, and the wall time of each part."""

    video: SampledVideo
    faces: FaceCrops
    started: float  # perf_counter when the worker began (a request may first wait for a free one)
    decode_s: float  # decoding, with the faces found meanwhile
    faces_s: float  # the face work left once decoding ended


class Analyzer:
    """Owns what an analysis needs: the model (and what it says about itself), the detector, the CPU
    pool, and the stage metrics, recorded here where the stages run."""

    def __init__(
        self,
        settings: Settings,
        detector: FaceDetector,
        backend: InferenceBackend,
        pool: ThreadPoolExecutor,
        metrics: Metrics,
        face_pool: ThreadPoolExecutor | None = None,
    ):
        self._settings, self._detector, self._backend, self._pool = settings, detector, backend, pool
        self._metrics = metrics
        self._face_pool = face_pool  # not `pool`: a decoder waits on its face work (see CropCollector)
        self._model: ModelInfo | None = None

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def detector(self) -> FaceDetector:
        return self._detector

    @property
    def backend(self) -> InferenceBackend:
        return self._backend

    @property
    def pool(self) -> ThreadPoolExecutor:
        return self._pool

    @property
    def face_pool(self) -> ThreadPoolExecutor | None:
        return self._face_pool

    async def model_info(self) -> ModelInfo:
        """Started lazily too, so a service that came up before Triton recovers by itself."""
        if self._model is None:
            model = await self._backend.start()
            if model.max_time is not None and self._settings.num_frames > model.max_time:
                raise BackendUnavailable(
                    f"the model takes sequences of at most {model.max_time} frames but "
                    f"DEEPFAKE_NUM_FRAMES is {self._settings.num_frames}"
                )
            self._model = model
        return self._model

    def _read_and_crop(self, path: Path, model: ModelInfo) -> DecodedVideo:
        """Decode and cut in one pass: each frame goes to the face pool as soon as it is decoded (faces
        are found while the next frames decode) and is dropped unless it will be shown (artifacts), so
        memory per analysis is its crops and at most a few frames."""
        s = self._settings
        shown = (lambda indices: set(display_indices(indices, s.display_frames))) if s.artifacts else None
        collector = CropCollector(self._detector, model.preprocessing, keep_positions=shown, executor=self._face_pool)
        budget = DecodeBudget(s.max_video_pixels, s.max_decoded_frames, s.max_decode_s)
        started = time.perf_counter()
        try:
            video = read_video(path, s.num_frames, s.min_frames, s.max_video_frames, budget, sink=collector)
        except BaseException:
            collector.cancel()
            raise
        decoded = time.perf_counter()
        faces = collector.result()
        return DecodedVideo(video, faces, started, decoded - started, time.perf_counter() - decoded)

    async def analyze(self, path: Path) -> Analysis:
        model = await self.model_info()
        loop = asyncio.get_running_loop()
        started, started_ns = time.perf_counter(), time.time_ns()
        decoded = await loop.run_in_executor(self._pool, self._read_and_crop, path, model)
        video, faces, face_seconds = decoded.video, decoded.faces, decoded.faces_s
        if not faces.positions:
            raise NoFaceDetected(f"no face was found in any of the {len(video.frames)} sampled frames")
        found = time.perf_counter()

        features = await self._backend.features(faces.crops)  # one pass over distinct crops
        featured = time.perf_counter()
        row_of = {position: row for row, position in enumerate(faces.positions)}
        sequence = [row_of[i] for i in video.sample_indices if i in row_of]  # repeats kept, as the seed fed them
        video_probabilities, frame_probabilities = await asyncio.gather(
            self._backend.probabilities(features[sequence][None]),
            self._backend.probabilities(features[:, None, :]),
        )
        inferred = time.perf_counter()

        p_fake_of = {position: float(frame_probabilities[row, 0]) for position, row in row_of.items()}
        frames = [FrameScore(i, video.frames[i].frame_time_sec, p_fake_of.get(i)) for i in video.sample_indices]
        verdicts: dict[Rule, Verdict] = {
            "sequence": sequence_verdict(float(video_probabilities[0, 0]), frames, model.thresholds["sequence"]),
            "original": original_verdict(frames, model.thresholds["original"]),
        }
        timings = {
            "decode": found - started - face_seconds,  # decoding, with the faces found meanwhile
            "faces": face_seconds,
            "inference": inferred - found,
            "total": inferred - started,
        }
        for stage, seconds in timings.items():
            self._metrics.stage_seconds.labels(stage).observe(seconds)

        def at(moment: float) -> int:  # a perf_counter reading as the epoch nanoseconds spans take
            return started_ns + int((moment - started) * 1e9)

        decoding_ended = decoded.started + decoded.decode_s
        if decoded.started > started:  # waited for a free decode worker (DEEPFAKE_CPU_THREADS)
            tracing.stage("queued", started_ns, at(decoded.started))
        tracing.stage("decode", at(decoded.started), at(decoding_ended), frames=len(video.sample_indices))
        tracing.stage("faces", at(decoding_ended), at(found), faces=len(faces.positions))
        tracing.stage("backbone", at(found), at(featured), batch=len(faces.positions), backend=self._backend.name)
        tracing.stage("head", at(featured), at(inferred), backend=self._backend.name)
        self._metrics.backbone_batch.observe(len(faces.positions))
        display = display_indices(video.sample_indices, self._settings.display_frames)
        return Analysis(video, faces, frames, verdicts, self._settings.verdict, timings, model, display)
