"""Probe a video, sample N evenly spaced frames, turn them upright.

Frame positions come from demuxing alone (packet timestamps, no decoding), so the frame count
and times are right for variable frame rate files whatever the header claims. Then the cheaper of
two plans decodes only what is needed: one forward pass up to the last wanted frame, or one seek
per group of pictures that holds wanted frames, decoding from its keyframe to its last wanted frame.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from preprocess_service.errors import NotAVideo, NoVideoStream, TooFewFrames, UnreadableVideo, VideoTooLarge

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
    rgb: np.ndarray = field(repr=False)  # upright, HxWx3 uint8


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


# Leading bytes of common video containers: a file that has one but will not open is damaged or
# truncated (422), anything else is not a video at all (415).
CONTAINER_SIGNATURES = ((4, b"ftyp", "MP4/QuickTime"), (0, b"\x1a\x45\xdf\xa3", "Matroska/WebM"),
                        (8, b"AVI ", "AVI"), (0, b"FLV", "FLV"), (0, b"OggS", "Ogg"))


def _container_kind(path: Path) -> str | None:
    with path.open("rb") as stream:
        head = stream.read(16)
    return next((kind for offset, magic, kind in CONTAINER_SIGNATURES if head[offset:offset + len(magic)] == magic), None)


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as error:
        reason = getattr(error, "strerror", None) or error.__class__.__name__  # never echo the temp path
        kind = _container_kind(path)
        if kind:
            raise UnreadableVideo(f"damaged or truncated {kind} file ({reason})") from error
        raise NotAVideo(f"not a video file ({reason})") from error


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    if not container.streams.video:
        raise NoVideoStream("the file has no video stream")
    return container.streams.video[0]


def _timeline(container: av.container.InputContainer, stream: av.VideoStream, max_frames: int) -> _Timeline:
    entries = []
    try:
        for packet in container.demux(stream):
            timestamp = packet.pts if packet.pts is not None else packet.dts
            if timestamp is None or packet.size == 0:
                continue
            entries.append((timestamp, packet.is_keyframe))
            if len(entries) > max_frames:
                raise VideoTooLarge(f"the video has more than {max_frames} frames")
    except av.FFmpegError:
        pass  # a truncated file: keep the packets read so far
    entries.sort()
    return _Timeline([pts for pts, _ in entries], [i for i, (_, key) in enumerate(entries) if key])


def _metadata(container, stream, path: Path, timeline: _Timeline, rotation: int) -> VideoMetadata:
    tags = {**dict(stream.metadata), **dict(container.metadata)}
    time_base = stream.time_base or Fraction(1, 1)
    span = (timeline.pts[-1] - timeline.pts[0]) if len(timeline.pts) > 1 else 0
    count = len(timeline.pts)
    # Mean rate over the real timestamps: right for variable frame rate files too.
    frame_rate = float((count - 1) / (span * time_base)) if span else float(stream.average_rate or 0)
    duration = float(container.duration / av.time_base) if container.duration else float(count / frame_rate or 0)
    width, height = stream.codec_context.width, stream.codec_context.height
    if rotation % 180:
        width, height = height, width
    return VideoMetadata(
        width=width, height=height, video_codec=stream.codec_context.name, frame_rate=round(frame_rate, 3),
        nb_frames=count, bit_rate=container.bit_rate or stream.bit_rate, duration=round(duration, 3),
        file_size=path.stat().st_size, format=container.format.name, rotation=rotation,
        creation_time=tags.get("creation_time"), location=tags.get(QUICKTIME_KEYS["location"]) or tags.get("location"),
        make=tags.get(QUICKTIME_KEYS["make"]), model=tags.get(QUICKTIME_KEYS["model"]),
        software=tags.get(QUICKTIME_KEYS["software"]), encoder=tags.get("encoder"),
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


def _decode(path: Path, timeline: _Timeline, targets: list[int]) -> tuple[dict[int, SampledFrame], int, int]:
    """Wanted frames by position, how many frames were decoded, and the display rotation."""
    position_of = {timeline.pts[i]: i for i in targets}
    first_pts = timeline.pts[0]
    frames: dict[int, SampledFrame] = {}
    decoded, rotation = 0, 0
    with _open(path) as container:
        stream = _video_stream(container)
        time_base = float(stream.time_base)
        plan = _plan(timeline, targets)
        if plan[0][0] is None:
            stream.thread_type = "AUTO"  # frame threads pay off on a long forward pass, not after seeks
        try:
            for start, last in plan:
                if start is not None:
                    container.seek(timeline.pts[start], stream=stream, backward=True)
                for frame in container.decode(stream):
                    decoded += 1
                    rotation = int(frame.rotation or 0)
                    position = position_of.get(frame.pts)
                    if position is not None and position not in frames:
                        frames[position] = SampledFrame(position, round((frame.pts - first_pts) * time_base, 4),
                                                        _upright(frame))
                    if frame.pts is None or frame.pts >= timeline.pts[last]:
                        break
        except av.FFmpegError:
            pass  # damaged data: keep the frames decoded so far
    return frames, decoded, rotation


def read_video(path: Path, num_frames: int, min_frames: int = 2, max_pixels: int = 3840 * 2160,
               max_frames: int = 100_000) -> SampledVideo:
    with _open(path) as container:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        if not width or not height:
            raise UnreadableVideo(f"the video stream has no picture size ({width}x{height})")
        if width * height > max_pixels:
            raise VideoTooLarge(f"frames of {width}x{height} exceed the limit of {max_pixels} pixels")
        timeline = _timeline(container, stream, max_frames)
        if len(timeline.pts) < min_frames:
            raise TooFewFrames(f"the video has {len(timeline.pts)} frame(s); at least {min_frames} are needed")
        indices = sample_indices(len(timeline.pts), num_frames)
        frames, decoded, rotation = _decode(path, timeline, sorted(set(indices)))
        if not frames:
            raise UnreadableVideo("no frame of the video could be decoded")
        metadata = _metadata(container, stream, path, timeline, rotation)
    indices = [i for i in indices if i in frames]  # frames lost to damage are left out, not invented
    return SampledVideo(metadata, indices, frames, decoded)


