"""Probe a video, sample N evenly spaced frames, turn them upright.

Frame positions come from demuxing alone (packet timestamps, no decoding), so the frame count
and times are right for variable frame rate files whatever the header claims. Then the cheaper of
two plans decodes only what is needed: one forward pass up to the last wanted frame, or one seek
per group of pictures that holds wanted frames, decoding from its keyframe to its last wanted frame.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import numpy as np

from preprocess_service.errors import (
    DecodeBudgetExceeded,
    NotAVideo,
    NoVideoStream,
    TooFewFrames,
    UnreadableVideo,
    VideoTooLarge,
)
from preprocess_service.sanitize import MAX_METADATA_CHARS, clean_text

SEEK_COST_IN_FRAMES = 8  # a seek flushes the decoder: worth a few decoded frames (measured order)
QUICKTIME_KEYS = {
    "make": "com.apple.quicktime.make",
    "model": "com.apple.quicktime.model",
    "software": "com.apple.quicktime.software",
    "location": "com.apple.quicktime.location.ISO6709",
}


@dataclass
class VideoMetadata:
    width: int  # as displayed, after rotation
    height: int
    video_codec: str
    frame_rate: float
    nb_frames: int
    bit_rate: int | None
    duration: float
    file_size: int
    format: str
    rotation: int = 0
    creation_time: str | None = None
    location: str | None = None
    make: str | None = None
    model: str | None = None
    software: str | None = None
    encoder: str | None = None


@dataclass
class SampledFrame:
    frame_index: int  # position in presentation order
    frame_time_sec: float
    rgb: np.ndarray | None = field(repr=False)  # upright, HxWx3 uint8; None once a FrameSink has taken it


class FrameSink(Protocol):
    """Takes each sampled frame as soon as it is decoded, so a request never holds all its full frames
    (30 of them at 4K are 750 MB); ``take`` answers whether the frame itself must be kept."""

    def begin(self, sample_indices: list[int]) -> None: ...

    def take(self, position: int, rgb: np.ndarray) -> bool: ...


@dataclass
class SampledVideo:
    metadata: VideoMetadata
    sample_indices: list[int]  # N entries, the seed's rule; repeats when the video is shorter than N
    frames: dict[int, SampledFrame]  # each distinct sampled index once
    decoded_frames: int  # how many frames the plan decoded (what the plan saves is visible here)


def sample_indices(frame_count: int, wanted: int) -> list[int]:
    """The seed's ``int(n * i / N)`` rule."""
    return [int(frame_count * i / wanted) for i in range(wanted)]


@dataclass(frozen=True)
class _Timeline:
    pts: list[int]  # presentation order
    keyframe_positions: list[int]  # indices into pts, sorted


@dataclass(frozen=True)
class Container:
    """A container the service opens: FFmpeg's demuxer for it, forced, and the leading bytes that name it."""

    name: str
    demuxer: str
    offset: int
    magics: tuple[bytes, ...]
    packet: int = 0  # > 0: a packet stream (MPEG-TS): the magic repeats every ``packet`` bytes, 3 times

    def matches(self, head: bytes) -> bool:
        if self.packet:
            return any(
                all(head[self.offset + i * self.packet : self.offset + i * self.packet + len(m)] == m for i in range(3))
                for m in self.magics
            )
        return any(head[self.offset : self.offset + len(m)] == m for m in self.magics)


# Only these are opened, each with its demuxer forced, so FFmpeg never picks one by content: its
# playlist, concat, image-sequence and similar demuxers read *other* files named inside the upload
# (a 41-byte text upload could make the service analyze another file on the server). Phones and
# cameras write MP4/QuickTime; Matroska/WebM and AVI are what other tools write; MPEG-TS (.ts, and
# Blu-ray/AVCHD's .m2ts with its 4-byte timestamp before each packet) is broadcast's and many
# camcorders' (its demuxer reads only the stream itself). A file that starts
# like one of them but will not open is damaged or truncated (422); anything else is 415.
CONTAINERS = (
    Container("MP4/QuickTime", "mov", 4, (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")),
    Container("Matroska/WebM", "matroska", 0, (b"\x1a\x45\xdf\xa3",)),
    Container("AVI", "avi", 8, (b"AVI ",)),
    Container("MPEG-TS", "mpegts", 0, (b"\x47",), packet=188),
    Container("MPEG-TS (M2TS)", "mpegts", 4, (b"\x47",), packet=192),
)
HEAD_BYTES = 4 + 3 * 192  # enough for every container's test
SUPPORTED = ", ".join(container.name for container in CONTAINERS)


def container_of(path: Path) -> Container | None:
    with path.open("rb") as stream:
        head = stream.read(HEAD_BYTES)
    if head[8:12] == b"AVI " and head[:4] != b"RIFF":
        return None
    return next((c for c in CONTAINERS if c.matches(head)), None)


def _open(path: Path) -> av.container.InputContainer:
    container = container_of(path)
    if container is None:
        raise NotAVideo(f"not a video file in a supported container ({SUPPORTED})")
    try:
        return av.open(str(path), mode="r", format=container.demuxer)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error.__class__.__name__  # never echo the temp path
        raise UnreadableVideo(f"damaged or truncated {container.name} file ({reason})") from error


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    if not container.streams.video:
        raise NoVideoStream("the file has no video stream")
    return container.streams.video[0]


def _timeline(
    container: av.container.InputContainer, stream: av.VideoStream, max_frames: int, budget: DecodeBudget
) -> _Timeline:
    entries = []
    try:
        for packet in container.demux(stream):
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if timestamp is None or packet.size == 0:
                continue
            entries.append((timestamp, packet.is_keyframe))
            if len(entries) > max_frames:
                raise VideoTooLarge(f"the video has more than {max_frames} frames")
            if len(entries) % 256 == 0:
                budget.check_time()
    except av.FFmpegError:
        pass  # a truncated file: keep the packets read so far
    entries.sort()
    return _Timeline([pts for pts, _ in entries], [i for i, (_, key) in enumerate(entries) if key])


def _metadata(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path, timeline: _Timeline, rotation: int
) -> VideoMetadata:
    tags = {**dict(stream.metadata), **dict(container.metadata)}
    time_base = stream.time_base or Fraction(1, 1)
    span = (timeline.pts[-1] - timeline.pts[0]) if len(timeline.pts) > 1 else 0
    count = len(timeline.pts)
    # Mean rate over the real timestamps: right for variable frame rate files too.
    frame_rate = float((count - 1) / (span * time_base)) if span else float(stream.average_rate or 0)
    duration = (
        float(container.duration / av.time_base) if container.duration else (count / frame_rate if frame_rate else 0.0)
    )
    width, height = stream.codec_context.width, stream.codec_context.height
    if rotation % 180:
        width, height = height, width

    def tag(*names: str) -> str | None:
        return clean_text(next((tags[n] for n in names if tags.get(n)), None), MAX_METADATA_CHARS)

    return VideoMetadata(
        width=width,
        height=height,
        video_codec=clean_text(stream.codec_context.name, MAX_METADATA_CHARS) or "",
        frame_rate=round(frame_rate, 3),
        nb_frames=count,
        bit_rate=container.bit_rate or stream.bit_rate,
        duration=round(duration, 3),
        file_size=path.stat().st_size,
        format=clean_text(container.format.name, MAX_METADATA_CHARS) or "",
        rotation=rotation,
        creation_time=tag("creation_time"),
        location=tag(QUICKTIME_KEYS["location"], "location"),
        make=tag(QUICKTIME_KEYS["make"]),
        model=tag(QUICKTIME_KEYS["model"]),
        software=tag(QUICKTIME_KEYS["software"]),
        encoder=tag("encoder"),
    )


def _plan(timeline: _Timeline, targets: list[int]) -> list[tuple[int | None, int]]:
    """Segments ``(start position to seek to, or None for no seek; last wanted position)``."""
    keys = timeline.keyframe_positions or [0]
    groups: dict[int, int] = {}
    for target in targets:
        start = keys[max(bisect.bisect_right(keys, target) - 1, 0)]
        groups[start] = max(groups.get(start, target), target)
    seek_cost = sum(last - start + 1 + SEEK_COST_IN_FRAMES for start, last in groups.items())
    if seek_cost < targets[-1] + 1:
        return sorted(groups.items())
    return [(None, targets[-1])]


def _upright(frame: av.VideoFrame) -> np.ndarray:
    """Contiguous, always: ``to_ndarray`` returns rows padded to the decoder's aligned stride whenever
    width x 3 bytes is not aligned (widths 270, 290, 360, 540, 854, 1080 ...: most phone videos), and
    MediaPipe's ``mp.Image`` reads a buffer as if it were contiguous, finding no face at all."""
    rgb = frame.to_ndarray(format="rgb24")
    quarter_turns = round((frame.rotation or 0) / 90) % 4  # display matrix angle, counter-clockwise
    return np.ascontiguousarray(np.rot90(rgb, k=quarter_turns) if quarter_turns else rgb)


@dataclass(frozen=True)
class DecodeBudget:
    """What one analysis may spend decoding. The header's frame size proves nothing (a stream can
    switch to 8K after 64x64 frames), and one long group of pictures at 4K can cost a minute of CPU."""

    max_pixels: int = 3840 * 2160  # every decoded frame, not only the header
    max_decoded_frames: int = 3000
    max_seconds: float = 20.0
    started: float = field(default_factory=time.monotonic)

    def check_time(self) -> None:
        if time.monotonic() - self.started > self.max_seconds:
            raise DecodeBudgetExceeded(f"decoding took longer than {self.max_seconds:g} s")

    def check_frame(self, frame: av.VideoFrame, decoded: int) -> None:
        if frame.width * frame.height > self.max_pixels:
            raise VideoTooLarge(
                f"a frame of {frame.width}x{frame.height} exceeds the limit of {self.max_pixels} pixels"
            )
        if decoded > self.max_decoded_frames:
            raise DecodeBudgetExceeded(
                f"reaching the sampled frames needs more than {self.max_decoded_frames} "
                "decoded frames (a very long group of pictures?)"
            )
        self.check_time()


# Codecs whose decoder honours skip_frame=NONREF exactly: a frame no other frame references is
# dropped before decoding, and every frame that is decoded has the same pixels as without skipping.
SKIP_NONREF_CODECS = frozenset({"h264", "hevc"})


def _decode(
    path: Path,
    timeline: _Timeline,
    targets: list[int],
    budget: DecodeBudget,
    sink: FrameSink | None,
    skip_unsampled_nonref: bool = True,
) -> tuple[dict[int, SampledFrame], int, int]:
    """Wanted frames by position, how many frames were decoded, and the display rotation.

    Frames are only decoded when a sampled frame needs them: a packet that is not sampled is decoded
    with ``skip_frame=NONREF`` (H.264/HEVC), so a non-reference frame nobody asked for is never
    decoded — about half of a phone video's frames, a third of its decode time (README, "Less work
    before the model"). The sampled frames are bit-identical either way (tests/test_video.py).
    """
    position_of = {timeline.pts[i]: i for i in targets}
    first_pts = timeline.pts[0]
    frames: dict[int, SampledFrame] = {}
    decoded, rotation = 0, 0
    with _open(path) as container:
        stream = _video_stream(container)
        codec = stream.codec_context
        skipping = skip_unsampled_nonref and codec.name in SKIP_NONREF_CODECS
        time_base = float(stream.time_base or 1)
        plan = _plan(timeline, targets)
        if plan[0][0] is None:
            stream.thread_type = "AUTO"  # frame threads pay off on a long forward pass, not after seeks
        try:
            for start, last in plan:
                if start is not None:
                    container.seek(timeline.pts[start], stream=stream, backward=True)
                done = False
                for packet in container.demux(stream):
                    if skipping:  # read per packet, also by frame threads (FFmpeg copies it at submission)
                        stamp = packet.pts if packet.pts is not None else packet.dts
                        codec.skip_frame = "NONREF" if stamp is not None and stamp not in position_of else "DEFAULT"
                    for frame in codec.decode(packet):
                        decoded += 1
                        budget.check_frame(frame, decoded)
                        rotation = int(frame.rotation or 0)
                        if frame.pts is None:
                            done = True
                            break
                        position = position_of.get(frame.pts)
                        if position is not None and position not in frames:
                            upright = _upright(frame)
                            kept = upright if sink is None or sink.take(position, upright) else None
                            frames[position] = SampledFrame(
                                position, round((frame.pts - first_pts) * time_base, 4), kept
                            )
                        if frame.pts >= timeline.pts[last]:
                            done = True
                            break
                    if done:
                        break
                codec.skip_frame = "DEFAULT"
        except av.FFmpegError:
            pass  # damaged data: keep the frames decoded so far
    return frames, decoded, rotation


def read_video(
    path: Path,
    num_frames: int,
    min_frames: int = 2,
    max_frames: int = 100_000,
    budget: DecodeBudget | None = None,
    sink: FrameSink | None = None,
    skip_unsampled_nonref: bool = True,
) -> SampledVideo:
    budget = budget or DecodeBudget()
    max_pixels = budget.max_pixels
    with _open(path) as container:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise UnreadableVideo(f"the video stream has no picture size ({width}x{height})")
        if width * height > max_pixels:
            raise VideoTooLarge(f"frames of {width}x{height} exceed the limit of {max_pixels} pixels")
        timeline = _timeline(container, stream, max_frames, budget)
        if len(timeline.pts) < min_frames:
            raise TooFewFrames(f"the video has {len(timeline.pts)} frame(s); at least {min_frames} are needed")
        indices = sample_indices(len(timeline.pts), num_frames)
        if sink is not None:
            sink.begin(indices)
        frames, decoded, rotation = _decode(path, timeline, sorted(set(indices)), budget, sink, skip_unsampled_nonref)
        if not frames:
            raise UnreadableVideo("no frame of the video could be decoded")
        metadata = _metadata(container, stream, path, timeline, rotation)
    indices = [i for i in indices if i in frames]  # frames lost to damage are left out, not invented
    return SampledVideo(metadata, indices, frames, decoded)


@dataclass(frozen=True)
class FrameClock:
    """A video's frame positions and their times, read by demuxing alone (no decoding): what a job's
    timeline samples from. Its size is one timestamp per frame, never a picture."""

    path: Path
    timeline: _Timeline
    time_base: float
    duration_s: float

    def time_of(self, position: int) -> float:
        return (self.timeline.pts[position] - self.timeline.pts[0]) * self.time_base

    def positions_at(self, times_s: list[float]) -> list[int]:
        """The frame shown at each time (the last one starting at or before it), each once, in order."""
        start = self.timeline.pts[0]
        stamps = [start + t / self.time_base for t in times_s]
        found = {max(bisect.bisect_right(self.timeline.pts, stamp) - 1, 0) for stamp in stamps}
        return sorted(found)


def read_clock(path: Path, max_frames: int, budget: DecodeBudget, min_frames: int = 2) -> FrameClock:
    """Opens and demuxes once, with the same refusals as ``read_video`` (4xx errors, never a crash)."""
    with _open(path) as container:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise UnreadableVideo(f"the video stream has no picture size ({width}x{height})")
        if width * height > budget.max_pixels:
            raise VideoTooLarge(f"frames of {width}x{height} exceed the limit of {budget.max_pixels} pixels")
        timeline = _timeline(container, stream, max_frames, budget)
        if len(timeline.pts) < min_frames:
            raise TooFewFrames(f"the video has {len(timeline.pts)} frame(s); at least {min_frames} are needed")
        time_base = float(stream.time_base or 1)
    span = (timeline.pts[-1] - timeline.pts[0]) * time_base
    step = span / (len(timeline.pts) - 1) if len(timeline.pts) > 1 else 0.0
    return FrameClock(path, timeline, time_base, span + step)


def decode_positions(clock: FrameClock, positions: list[int], budget: DecodeBudget, sink: FrameSink) -> int:
    """Decodes exactly these frame positions into ``sink`` by the cheaper plan (seeks per group of
    pictures, or one forward pass), keeping none of them; answers how many frames were decoded."""
    if sink is not None:
        sink.begin(positions)
    _, decoded, _ = _decode(clock.path, clock.timeline, sorted(set(positions)), budget, sink)
    return decoded
