"""A video scored over time: frames sampled evenly over its whole length, the temporal model over
sliding windows of them, and each frame alone, so a manipulated stretch inside a long video is
found rather than averaged away (``/predict/``'s 30 frames of a 10-minute video are one every 20 s).

Sampling: ``timeline_fps`` frames per second (2 by default: a 20-second stretch gets 40 samples),
at most ``timeline_max_samples`` per video (a longer video is sampled more sparsely, evenly).
Windows: ``timeline_window`` consecutive samples (10 s at 2 fps; never more than the model's
``max_time``), every ``timeline_stride`` samples (5 s), so each moment is in two windows; a window
is scored over the samples in it that have a face, as ``/predict/`` scores its sequence.

Memory does not grow with the video: samples are decoded in chunks (seeks per group of pictures,
video.decode_positions), each chunk's crops become features and are dropped, and only the last
window's features are held; what grows is the timeline itself, a few numbers per sample.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from model_contract.identity import ModelInfo
from preprocess_service.errors import VideoTooLong
from preprocess_service.faces import CropCollector
from preprocess_service.pipeline import Analyzer
from preprocess_service.settings import Settings
from preprocess_service.video import DecodeBudget, FrameClock, decode_positions, read_clock

CHUNK_SAMPLES = 32  # samples decoded, cropped and featured together: one backbone batch


@dataclass(frozen=True)
class TimelineOptions:
    fps: float = 2.0
    max_samples: int = 1800
    window: int = 20
    stride: int = 10

    def for_model(self, model: ModelInfo) -> TimelineOptions:
        """The window never exceeds what the temporal model takes (``max_time``)."""
        if model.max_time is not None and self.window > model.max_time:
            window = model.max_time
            return TimelineOptions(self.fps, self.max_samples, window, min(self.stride, window))
        return self

    def describe(self) -> dict[str, Any]:
        return {"fps": self.fps, "max_samples": self.max_samples, "window": self.window, "stride": self.stride}


def sample_times(duration_s: float, options: TimelineOptions) -> list[float]:
    """Evenly over the whole video: one every 1/fps seconds, or ``max_samples`` evenly if that is fewer."""
    wanted = max(1, int(duration_s * options.fps))
    count = min(wanted, options.max_samples)
    step = duration_s / count
    return [round(i * step, 4) for i in range(count)]


def window_starts(count: int, window: int, stride: int) -> list[int]:
    """Starts of the windows over ``count`` samples: every ``stride``, and one ending on the last sample
    so the video's end is covered; a video shorter than one window is one window."""
    if count <= window:
        return [0]
    starts = list(range(0, count - window + 1, stride))
    if starts[-1] + window < count:
        starts.append(count - window)
    return starts


@dataclass
class Sample:
    time_s: float
    p_fake: float | None  # the frame alone; None: no face


@dataclass
class Timeline:
    """What a job reports while it runs and when it is done (the answer's ``timeline``)."""

    options: TimelineOptions
    duration_s: float
    threshold: float
    planned: int  # samples planned
    samples: list[Sample] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def progress(self) -> float:
        return min(len(self.samples) / self.planned, 1.0) if self.planned else 1.0

    def flagged(self) -> list[dict[str, Any]]:
        """Stretches where consecutive windows score at or above the threshold, merged."""
        stretches: list[dict[str, Any]] = []
        for segment in self.segments:
            p = segment["p_fake"]
            if p is None or p < self.threshold:
                continue
            last = stretches[-1] if stretches else None
            if last is not None and segment["start_s"] <= last["end_s"]:
                last["end_s"] = max(last["end_s"], segment["end_s"])
                last["max_p_fake"] = max(last["max_p_fake"], p)
                last["windows"] += 1
            else:
                stretches.append(
                    {"start_s": segment["start_s"], "end_s": segment["end_s"], "max_p_fake": p, "windows": 1}
                )
        return stretches

    def to_json(self) -> dict[str, Any]:
        return {
            **self.options.describe(),
            "duration_s": round(self.duration_s, 3),
            "threshold": self.threshold,
            "samples_planned": self.planned,
            "frames": [{"t": s.time_s, "p_fake": s.p_fake} for s in self.samples],
            "segments": self.segments,
            "flagged": self.flagged(),
        }


Report = Callable[[Timeline], Awaitable[bool]]  # called after each chunk; False: stop (cancelled, lease lost)


class Stopped(Exception):
    """The job was cancelled or taken back while its timeline was being computed."""


def read_job_clock(settings: Settings, path: Path, max_video_s: float) -> FrameClock:
    """The video's frame clock, with /predict/'s refusals (not a video, no video stream, too many or
    too few frames, frames too large) and the jobs' own (longer than ``max_video_s``). Demuxing only,
    no decoding: cheap enough to run when a job is submitted, so that a file no worker could analyze
    is refused at once (a 4xx) rather than accepted and failed later."""
    budget = DecodeBudget(settings.max_video_pixels, settings.max_decoded_frames, settings.max_decode_s)
    clock = read_clock(path, settings.max_video_frames, budget, settings.min_frames)
    if clock.duration_s > max_video_s:
        raise VideoTooLong(f"the video is {clock.duration_s:.0f} s long; jobs take at most {max_video_s:.0f} s")
    return clock


class TimelineAnalyzer:
    """Runs on the same Analyzer parts as /predict/ (its detector, pools and inference backend), so
    Triton batches a job's windows with everyone's requests."""

    def __init__(self, analyzer: Analyzer, options: TimelineOptions, max_video_s: float) -> None:
        self._analyzer, self._options, self._max_video_s = analyzer, options, max_video_s

    async def analyze(self, clock_path: Path, report: Report) -> Timeline:
        analyzer = self._analyzer
        settings = analyzer.settings
        model = await analyzer.model_info()
        options = self._options.for_model(model)
        loop = asyncio.get_running_loop()
        clock = await loop.run_in_executor(analyzer.pool, read_job_clock, settings, clock_path, self._max_video_s)
        times = sample_times(clock.duration_s, options)
        positions = clock.positions_at(times)
        timeline = Timeline(options, clock.duration_s, model.thresholds["sequence"], len(positions))
        starts = deque(window_starts(len(positions), options.window, options.stride))
        features: dict[int, np.ndarray] = {}  # sample number → feature, only for windows still open
        for chunk_start in range(0, len(positions), CHUNK_SAMPLES):
            chunk = positions[chunk_start : chunk_start + CHUNK_SAMPLES]
            collector = CropCollector(analyzer.detector, model.preprocessing, executor=analyzer.face_pool)
            chunk_budget = DecodeBudget(settings.max_video_pixels, settings.max_decoded_frames, settings.max_decode_s)
            await loop.run_in_executor(analyzer.pool, decode_positions, clock, chunk, chunk_budget, collector)
            faces = collector.result()
            row_of = {position: row for row, position in enumerate(faces.positions)}
            frame_p = np.empty((0, 2))
            if faces.positions:
                chunk_features = await analyzer.backend.features(faces.crops)
                frame_p = await analyzer.backend.probabilities(chunk_features[:, None, :])
            for offset, position in enumerate(chunk):
                number = chunk_start + offset
                row = row_of.get(position)
                p = None if row is None else round(float(frame_p[row, 0]), 6)
                timeline.samples.append(Sample(round(clock.time_of(position), 3), p))
                if row is not None:
                    features[number] = chunk_features[row]
            done = len(timeline.samples)
            ready = []
            while starts and (starts[0] + options.window <= done or done == len(positions)):
                ready.append(starts.popleft())
            timeline.segments.extend(await self._windows(ready, options.window, features, timeline))
            keep_from = starts[0] if starts else done
            for number in [n for n in features if n < keep_from]:
                del features[number]
            if not await report(timeline):
                raise Stopped("stopped")
        return timeline

    async def _windows(
        self, starts: list[int], window: int, features: dict[int, np.ndarray], timeline: Timeline
    ) -> list[dict[str, Any]]:
        backend = self._analyzer.backend
        step = 1 / self._options.fps

        async def score(start: int) -> dict[str, Any]:
            numbers = range(start, min(start + window, len(timeline.samples)))
            with_face = [features[n] for n in numbers if n in features]
            p_fake = None
            if with_face:
                p_fake = round(float((await backend.probabilities(np.stack(with_face)[None]))[0, 0]), 6)
            first, last = timeline.samples[numbers[0]], timeline.samples[numbers[-1]]
            end = min(last.time_s + step, timeline.duration_s)
            return {"start_s": first.time_s, "end_s": round(end, 3), "p_fake": p_fake, "faces": len(with_face)}

        return list(await asyncio.gather(*(score(start) for start in starts)))
