"""Real videos made for the tests: real photos shipped in scikit-image, encoded with libx264."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data


def astronaut(size: tuple[int, int] | None = None) -> np.ndarray:
    """A real face photo (512x512 RGB), optionally resized to (width, height)."""
    image = data.astronaut()
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA) if size else image


def no_face() -> np.ndarray:
    return data.coffee()  # a real photo of a coffee cup: no face


def write_video(
    path: Path,
    frames: list[np.ndarray],
    fps: int = 25,
    gop: int = 12,
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
) -> Path:
    """H.264 in MP4. ``pts`` with ``time_base`` give each frame its own timestamp (variable rate)."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width - width % 2, height - height % 2  # 4:2:0 wants even sides
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "ultrafast", "bf": "0"}
        if time_base is not None:
            stream.codec_context.time_base = time_base
            stream.time_base = time_base
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(
                np.ascontiguousarray(rgb[: stream.height, : stream.width]), format="rgb24"
            )
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def moving_face_video(path: Path, count: int = 40, size: tuple[int, int] = (320, 320), **options) -> Path:
    """The astronaut drifting a few pixels per frame, so frames differ like a real clip."""
    base = astronaut((size[0] + 40, size[1] + 40))
    frames = [base[i % 20 : i % 20 + size[1], (2 * i) % 40 : (2 * i) % 40 + size[0]] for i in range(count)]
    return write_video(path, frames, **options)


def audio_only(path: Path, seconds: float = 1.0) -> Path:
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=44100)
        samples = int(44100 * seconds)
        tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 44100)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = tone[start : start + 1024][None, :]
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            frame.sample_rate = 44100
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def zero_size_video(path: Path) -> Path:
    """A real Matroska file whose header says 0x0 pixels (its PixelWidth/PixelHeight set to 0)."""
    source = path.with_suffix(".source.mkv")
    with av.open(str(source), mode="w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 2, 2, "yuv420p"
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((2, 2, 3), np.uint8), format="rgb24")))
        container.mux(stream.encode())
    data = bytearray(source.read_bytes())
    source.unlink()
    for element in (b"\xb0\x81\x02", b"\xba\x81\x02"):  # EBML ids PixelWidth, PixelHeight; 1-byte value 2
        position = data.find(element)
        assert position > 0, "Matroska header layout changed"
        data[position + 2] = 0
    path.write_bytes(bytes(data))
    return path


def face_in_frame(width: int, height: int) -> np.ndarray:
    """The astronaut's head and shoulders fitted into a ``width`` x ``height`` frame on grey, framed as a
    phone's selfie video frames a face."""
    head = data.astronaut()[0:300, 90:330]  # 240 x 300: hair to shoulders
    scale = min(width / head.shape[1], height / head.shape[0])
    fitted = cv2.resize(head, (int(head.shape[1] * scale), int(head.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 96, np.uint8)
    top, left = (height - fitted.shape[0]) // 2, (width - fitted.shape[1]) // 2
    frame[top : top + fitted.shape[0], left : left + fitted.shape[1]] = fitted
    return frame


def phone_sized_video(path: Path, width: int, portrait: bool, count: int = 12) -> Path:
    """H.264 at a phone's width, 16:9 either way; widths like 270 or 854 give padded decoder rows."""
    other = int(round(width * (16 / 9 if portrait else 9 / 16) / 2)) * 2
    frames = [np.roll(face_in_frame(width, other), shift, axis=1) for shift in range(0, 2 * count, 2)]
    return write_video(path, frames)


def resolution_switch(path: Path, small: int = 64, large: int = 1024, count: int = 6) -> Path:
    """Matroska/MJPEG whose header and first frames say ``small`` px and whose later frames are ``large``."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width = stream.height = small
        stream.pix_fmt = "yuvj420p"
        big = av.CodecContext.create("mjpeg", "w")
        big.width = big.height = large
        big.pix_fmt, big.time_base = "yuvj420p", Fraction(1, 25)
        for i in range(count):
            size = small if i < 2 else large
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 30 * i % 256, np.uint8), format="rgb24")
            frame = frame.reformat(format="yuvj420p")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            for packet in stream.encode(frame) if size == small else big.encode(frame):
                packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 25)
                out.mux(packet)
    return path


def remux(
    source: Path, path: Path, container: str, options: dict[str, str] | None = None, tags: dict[str, str] | None = None
) -> Path:
    """``source``'s H.264 packets in another container (no re-encoding), with muxer ``options`` and
    container ``tags``."""
    with av.open(str(source)) as inp, av.open(str(path), "w", format=container, options=options or {}) as out:
        out.metadata.update(tags or {})
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return path


def tagged_video(source: Path, path: Path, tags: dict[str, str]) -> Path:
    """``source`` in a QuickTime file whose metadata holds ``tags`` (keys such as
    ``com.apple.quicktime.make`` are written as a phone writes them: ``mdta`` keys)."""
    return remux(source, path, "mov", {"movflags": "use_metadata_tags"}, tags)


def grace_hopper(size: tuple[int, int]) -> np.ndarray:
    """Another real face photo, shipped in matplotlib (the other face of an altered stretch)."""
    import matplotlib.cbook

    image = cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    return cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), size, interpolation=cv2.INTER_AREA)


def altered_stretch_video(
    path: Path, seconds: float, altered: tuple[float, float], fps: int = 4, size: tuple[int, int] = (160, 160)
) -> Path:
    """``seconds`` of the astronaut drifting, with the face swapped for Grace Hopper's between
    ``altered`` (start, end) seconds: a stretch a timeline must find. Encoded frame by frame (memory
    stays one frame), H.264, a keyframe every 2 s as cameras write."""
    width, height = size
    faces = {
        False: astronaut((width + 40, height + 40)),
        True: grace_hopper((width + 40, height + 40)),
    }
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 2 * fps
        stream.options = {"preset": "ultrafast", "bf": "0"}
        for i in range(int(seconds * fps)):
            base = faces[altered[0] <= i / fps < altered[1]]
            rgb = np.ascontiguousarray(base[i % 20 : i % 20 + height, (2 * i) % 40 : (2 * i) % 40 + width])
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    return path
