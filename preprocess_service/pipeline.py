"""analyze(path) → Analysis: decode → crops → backbone (beside the decoding) → temporal head → verdicts.

CPU stages (decode, face detection, crops) run in a bounded thread pool so the event loop stays
free. The backbone sees each distinct crop once. With ``DEEPFAKE_OVERLAP_CHUNK`` = K > 0 (the
default with Triton, where the model does not share this CPU) it starts on a video's first crops
while later frames are still decoded and cut: as soon as K new crops are waiting, one call takes
all of them, and once the front (decoding and faces) is done the crops not sent yet go in one last
call, so a request costs about max(front, model) rather than front + model. K = 0 (the default
embedded, where ONNX Runtime already uses every core) is the sequential path: one call over all
crops after decoding.
Features are per crop, so the answers are the same either way (tests/test_overlap.py). The
``sequence`` verdict is the temporal head over the whole sequence, once every feature is in; the
per-frame scores the same head over each frame alone (one batched call of one-frame sequences, as
the original scored frames), and the ``original`` verdict is read off those. The two head calls
run concurrently.

``Analysis.timings`` (the answer's ``stage_times_sec``): ``decode`` (decoding, with the faces found
meanwhile; a wait for a free decode worker included), ``faces`` (face work left once decoding
ended), ``inference`` (model time left once the front ended: all of it when sequential),
``total`` (the request's wall time, = decode + faces + inference), ``front`` (= decode + faces)
and ``model`` (the backbone calls' and the head's own time, wherever they fell): with the overlap,
``total`` < ``front`` + ``model``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

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


class Backbone:
    """One analysis's backbone calls, started on its crops as they are cut (``offer``, from any
    thread) while later frames still decode, K (``chunk``) new crops at a time; ``features`` then
    sends what is left, once the front is done, and gives every row in ``FaceCrops.positions``
    order. Calls run one after another: with one engine (DEEPFAKE_INFERENCE_THREADS=1, every core on
    a call) more at once would only queue, and a call takes every crop waiting when it starts.
    ``close`` (always, in a ``finally``) cancels a call in flight and waits for it: no task outlives
    the analysis."""

    def __init__(self, backend: InferenceBackend, chunk: int, loop: asyncio.AbstractEventLoop) -> None:
        self._backend, self._chunk, self._loop = backend, chunk, loop
        self._waiting: list[tuple[int, np.ndarray]] = []  # cut, not sent yet (on the loop only)
        self._features: dict[int, np.ndarray] = {}  # position -> its feature row
        self._wake = asyncio.Event()
        self._front_done = self._closed = False
        self.calls: list[tuple[float, float, int]] = []  # (start, end) perf_counter and crops, per call
        self._task = loop.create_task(self._run(), name="backbone chunks")

    def offer(self, position: int, crop: np.ndarray) -> None:
        """A crop just cut, on a face-pool thread (CropCollector's ``on_crop``): handed to the loop."""
        if not self._closed:
            try:
                self._loop.call_soon_threadsafe(self._take, position, crop)
            except RuntimeError:  # the loop is closed: the analysis is gone, and so is its answer
                pass

    def _take(self, position: int, crop: np.ndarray) -> None:
        if not (self._closed or self._front_done):  # after the front, ``features`` sends the rest itself
            self._waiting.append((position, crop))
            if len(self._waiting) >= self._chunk:
                self._wake.set()

    async def _call(self, positions: list[int], crops: np.ndarray) -> None:
        started = time.perf_counter()
        rows = await self._backend.features(crops)
        self.calls.append((started, time.perf_counter(), len(positions)))
        self._features.update(zip(positions, rows, strict=True))

    async def _run(self) -> None:
        while not self._front_done:
            await self._wake.wait()
            self._wake.clear()
            while not self._front_done and len(self._waiting) >= self._chunk:
                batch, self._waiting = self._waiting, []
                await self._call([position for position, _ in batch], np.stack([crop for _, crop in batch]))

    async def features(self, faces: FaceCrops) -> np.ndarray:
        """Once the front is done: the call in flight finished (its error raised here), the crops not
        sent yet in one last call (taken from ``faces``, so none can be missed), ``[n, D]`` in order."""
        self._front_done = True
        self._wake.set()
        await self._task
        rest = [row for row, position in enumerate(faces.positions) if position not in self._features]
        if rest:
            await self._call([faces.positions[row] for row in rest], faces.crops[rest])
        return np.stack([self._features[position] for position in faces.positions])

    async def close(self) -> None:
        self._closed = True
        self._waiting.clear()
        if not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])  # waits for it; a cancellation of the caller still raises
        if not self._task.cancelled():
            self._task.exception()  # retrieved: an error already raised, or one the analysis's own replaced


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
            served = self._settings.served_plan
            self._model = replace(model, plan=model.plan or served.plan, plan_reason=served.reason)
        return self._model

    def _read_and_crop(
        self, path: Path, model: ModelInfo, on_crop: Callable[[int, np.ndarray], None] | None = None
    ) -> DecodedVideo:
        """Decode and cut in one pass: each frame goes to the face pool as soon as it is decoded (faces
        are found while the next frames decode) and is dropped unless it will be shown (artifacts), so
        memory per analysis is its crops and at most a few frames. ``on_crop`` gets each crop as it
        is cut (``Backbone.offer``)."""
        s = self._settings
        shown = (lambda indices: set(display_indices(indices, s.display_frames))) if s.artifacts else None
        collector = CropCollector(
            self._detector, model.preprocessing, keep_positions=shown, executor=self._face_pool, on_crop=on_crop
        )
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
        chunk = self._settings.backbone_chunk
        backbone = Backbone(self._backend, chunk, loop) if chunk > 0 else None
        try:
            decoded = await loop.run_in_executor(
                self._pool, self._read_and_crop, path, model, backbone.offer if backbone else None
            )
            video, faces, face_seconds = decoded.video, decoded.faces, decoded.faces_s
            if not faces.positions:
                raise NoFaceDetected(f"no face was found in any of the {len(video.frames)} sampled frames")
            found = time.perf_counter()
            if backbone is None:  # sequential: one pass over distinct crops
                features = await self._backend.features(faces.crops)
                calls = [(found, time.perf_counter(), len(faces.positions))]
            else:
                features = await backbone.features(faces)
                calls = backbone.calls
        finally:
            if backbone is not None:
                await backbone.close()
        head_started = time.perf_counter()
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
            "inference": inferred - found,  # the model time left once the front was done
            "total": inferred - started,
            "front": found - started,
            "model": sum(end - start for start, end, _ in calls) + (inferred - head_started),
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
        tracing.stage(  # from the first call's start to the last one's end: beside decode and faces when overlapped
            "backbone",
            at(calls[0][0]),
            at(calls[-1][1]),
            batch=len(faces.positions),
            calls=len(calls),
            backend=self._backend.name,
        )
        tracing.stage("head", at(head_started), at(inferred), backend=self._backend.name)
        for _, _, size in calls:
            self._metrics.backbone_batch.observe(size)
        display = display_indices(video.sample_indices, self._settings.display_frames)
        return Analysis(video, faces, frames, verdicts, self._settings.verdict, timings, model, display)
