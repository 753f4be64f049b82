"""A hostile corpus, generated (no committed binaries): every class of input an attacker or a broken
client sends. Each case names what the service must answer: a status and error code (or a set of
acceptable ones where the outcome depends on what the damage hits), never a 500."""

from __future__ import annotations

import io
import random
import tarfile
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from tests import media

OK = (200, None)


@dataclass(frozen=True)
class Case:
    name: str
    content: bytes
    expected: tuple[tuple[int, str | None], ...]  # acceptable (status, error code) pairs
    filename: str = "upload.mp4"


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def _tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("clip.mp4")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"data"))
    return buffer.getvalue()


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("clip.mp4", b"data")
    return buffer.getvalue()


def _png() -> bytes:
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(media.astronaut((64, 64))).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    from PIL import Image

    Image.fromarray(media.astronaut((64, 64))).save(buffer, format="JPEG")
    return buffer.getvalue()


def _encode(
    path: Path,
    frames: list[np.ndarray],
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    container: str | None = None,
    gop: int = 12,
    pts: list[int] | None = None,
) -> Path:
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.gop_size = gop
        if codec == "libx264":
            stream.options = {"preset": "ultrafast", "bf": "0"}
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 25)
            for packet in stream.encode(frame):
                if pts is not None:
                    packet.pts = packet.dts = pts[i]
                out.mux(packet)
        out.mux(stream.encode())
    return path


def _flip(data: bytes, seed: int, count: int, start_fraction: float = 0.3) -> bytes:
    rng = random.Random(seed)
    damaged = bytearray(data)
    for _ in range(count):
        position = rng.randrange(int(len(damaged) * start_fraction), len(damaged))
        damaged[position] ^= 0xFF
    return bytes(damaged)


def corpus(folder: Path) -> list[Case]:
    """≥ 50 cases. The service under test runs with small limits (see test_hostile.py)."""
    face = media.moving_face_video(folder / "face.mp4", count=20, size=(192, 192))
    face_bytes = _bytes(face)
    rng = np.random.default_rng(0)
    playlists = {
        "ffconcat playlist": b"ffconcat version 1.0\nfile 'face.mp4'\n",
        "concat list": b"file '/etc/passwd'\n",
        "hls playlist": b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
        "hls pointing at a local video": b"#EXTM3U\n#EXTINF:10,\n" + str(face).encode() + b"\n",
        "sdp file": b"v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nm=video 5004 RTP/AVP 96\n",
        "image2 pattern name": b"%03d.png",
        "ffmetadata": b";FFMETADATA1\ntitle=x\n",
        "subtitles": b"1\n00:00:01,000 --> 00:00:02,000\nhello\n",
    }
    cases = [Case(name, content, ((415, "not_a_video"),)) for name, content in playlists.items()]
    not_videos = {
        "random bytes 1 KiB": rng.integers(0, 256, 1024, dtype=np.uint8).tobytes(),
        "random bytes 300 KiB": rng.integers(0, 256, 300 * 1024, dtype=np.uint8).tobytes(),
        "text": b"hello, this is not a video\n" * 40,
        "json": b'{"file": "video.mp4"}',
        "html": b"<!doctype html><html><body><video src='/etc/passwd'></video></body></html>",
        "pdf header": b"%PDF-1.7\n" + b"\0" * 200,
        "tar archive": _tar(),
        "zip archive": _zip(),
        "png still image": _png(),
        "jpeg still image": _jpeg(),
        "gif header": b"GIF89a" + b"\0" * 100,
        "wav (RIFF, not AVI)": b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 100,
        "RIFF-less AVI marker": b"XXXX\x00\x00\x00\x00AVI LIST" + b"\0" * 100,
        "elf binary": b"\x7fELF" + b"\0" * 200,
        "null bytes": b"\0" * 4096,
    }
    cases += [Case(name, content, ((415, "not_a_video"),)) for name, content in not_videos.items()]
    cases.append(Case("empty", b"", ((400, "empty_file"),)))

    unreadable = ((422, "unreadable_video"), (422, "too_few_frames"), (422, "no_face_detected"))
    for fraction in (0.02, 0.3, 0.6, 0.95):
        cases.append(
            Case(f"truncated MP4 at {fraction:.0%}", face_bytes[: int(len(face_bytes) * fraction)], unreadable)
        )
    cases.append(Case("MP4 header only", face_bytes[:64], unreadable))
    for seed in range(4):
        cases.append(
            Case(f"corrupt stream (bytes flipped, seed {seed})", _flip(face_bytes, seed, 40), (OK, *unreadable))
        )
    cases.append(
        Case(
            "ftyp box then garbage", face_bytes[:32] + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(), unreadable
        )
    )
    cases.append(Case("EBML magic then garbage", b"\x1a\x45\xdf\xa3" + b"\x01" * 500, unreadable))

    mkv = media.remux(face, folder / "face.mkv", "matroska")
    avi = _encode(
        folder / "face.avi", [media.astronaut((192, 192))] * 12, codec="mjpeg", pix_fmt="yuvj420p", container="avi"
    )
    cases += [
        Case("Matroska named .mp4", _bytes(mkv), (OK,), "clip.mp4"),
        Case("MP4 named .txt", face_bytes, (OK,), "notes.txt"),
        Case("AVI named .mov", _bytes(avi), (OK,), "clip.mov"),
        Case("MP4 without extension", face_bytes, (OK,), "clip"),
    ]

    switch = media.resolution_switch(folder / "switch.mkv", small=64, large=1024, count=8)
    cases.append(Case("resolution switch 64 -> 1024 mid-stream", _bytes(switch), ((422, "video_too_large"),)))
    big_header = _encode(
        folder / "big.mkv",
        [np.zeros((800, 800, 3), np.uint8)] * 3,
        codec="mjpeg",
        pix_fmt="yuvj420p",
        container="matroska",
    )
    cases.append(Case("frames over the pixel limit", _bytes(big_header), ((422, "video_too_large"),)))
    long_gop = _encode(folder / "long_gop.mp4", [media.astronaut((96, 96))] * 400, gop=400)
    cases.append(Case("long single GOP (decode budget)", _bytes(long_gop), ((422, "decode_budget_exceeded"),)))

    ten_bit = _encode(folder / "ten_bit.mp4", [media.astronaut((192, 192))] * 12, pix_fmt="yuv420p10le")
    cases.append(Case("10-bit H.264", _bytes(ten_bit), (OK,)))
    for width, height in ((203, 157), (4000, 2), (2, 4000), (2, 2), (16, 16)):
        frames = [np.full((height, width, 3), 128, np.uint8)] * 6
        video = _encode(
            folder / f"size_{width}x{height}.mkv", frames, codec="ffv1", pix_fmt="yuv444p", container="matroska"
        )
        cases.append(Case(f"odd size {width}x{height}", _bytes(video), ((422, "no_face_detected"),)))
    zero_times = _encode(
        folder / "zero_times.mkv", [media.astronaut((128, 128))] * 6, codec="ffv1", container="matroska", pts=[0] * 6
    )
    cases.append(Case("every frame at timestamp 0", _bytes(zero_times), (OK, *unreadable)))
    cases.append(
        Case(
            "one frame",
            _bytes(media.write_video(folder / "one.mp4", [media.astronaut((128, 128))])),
            ((422, "too_few_frames"),),
        )
    )
    cases.append(Case("audio only", _bytes(media.audio_only(folder / "audio.mp4")), ((422, "no_video_stream"),)))
    cases.append(
        Case(
            "no face",
            _bytes(media.write_video(folder / "coffee.mp4", [media.no_face()] * 8)),
            ((422, "no_face_detected"),),
        )
    )
    cases.append(Case("zero-size header", _bytes(media.zero_size_video(folder / "zero.mkv")), unreadable))

    for filename in (
        "../../etc/passwd.mp4",
        "a/b\\c.mp4",
        "vidéo 日本語 🎥.mp4",
        "evil\r\nX-Injected: 1.mp4",
        "control\x01\x7f.mp4",
        "x" * 300 + ".mp4",
        ".mp4",
        "semi;colon\"quote'.mp4",
    ):
        cases.append(Case(f"filename {filename[:24]!r}", face_bytes, (OK,), filename))
    return cases
