"""Frame sampling: the seed's indices, decoding only what is needed, variable frame rate, rotation."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from preprocess_service.errors import DecodeBudgetExceeded, NotAVideo, TooFewFrames, VideoTooLarge
from preprocess_service.video import DecodeBudget, read_video, sample_indices
from tests import media


def test_sample_indices_follow_the_seed_rule():
    assert sample_indices(300, 30) == [int(300 * i / 30) for i in range(30)]
    assert sample_indices(10, 4) == [0, 2, 5, 7]
    assert sample_indices(3, 6) == [0, 0, 1, 1, 2, 2]  # short videos repeat frames, as the seed did


def test_few_frames_from_a_long_video_seek_instead_of_decoding_everything(tmp_path):
    frames = [np.full((64, 64, 3), i % 256, np.uint8) for i in range(300)]
    path = media.write_video(tmp_path / "long.mp4", frames, gop=10)
    video = read_video(path, 4)
    assert video.metadata.nb_frames == 300 and video.sample_indices == [0, 75, 150, 225]
    assert video.decoded_frames <= 4 * 10, "one group of pictures per wanted frame at most"
    for index in video.sample_indices:  # the right frames, not their neighbours (gray level = index)
        assert abs(int(video.frames[index].rgb.mean()) - index % 256) <= 3


def test_many_frames_decode_forward_once(tmp_path):
    frames = [np.full((64, 64, 3), (7 * i) % 256, np.uint8) for i in range(60)]
    video = read_video(media.write_video(tmp_path / "short.mp4", frames, gop=60), 30)
    assert video.decoded_frames <= 60
    for index in video.sample_indices:
        assert abs(int(video.frames[index].rgb.mean()) - (7 * index) % 256) <= 3


def test_unsampled_non_reference_frames_are_skipped_and_sampled_frames_are_bit_identical(seed_videos):
    """4 of the 5 seed videos have B-frames no other frame references: those not sampled are never
    decoded, and the 30 sampled frames are exactly those of a full decode."""
    skipped_somewhere = False
    for path in seed_videos:
        lean, full = read_video(path, 30), read_video(path, 30, skip_unsampled_nonref=False)
        assert lean.sample_indices == full.sample_indices and set(lean.frames) == set(full.frames)
        for position, frame in full.frames.items():
            assert frame.frame_time_sec == lean.frames[position].frame_time_sec
            assert np.array_equal(frame.rgb, lean.frames[position].rgb), (path.name, position)
        assert lean.decoded_frames <= full.decoded_frames
        skipped_somewhere |= lean.decoded_frames < full.decoded_frames * 0.8
    assert skipped_somewhere


def test_variable_frame_rate_times_come_from_the_timestamps(tmp_path):
    pts = [0, 40, 80, 200, 240, 600, 640, 680, 1000, 1040]
    path = media.write_video(
        tmp_path / "vfr.mp4", [media.astronaut((64, 64))] * 10, pts=pts, time_base=Fraction(1, 1000)
    )
    video = read_video(path, 10)
    assert video.metadata.nb_frames == 10
    assert [video.frames[i].frame_time_sec for i in video.sample_indices] == [p / 1000 for p in pts]


def test_rotated_quicktime_file_is_turned_upright(seed_videos):
    mov = next(p for p in seed_videos if p.suffix == ".MOV")
    video = read_video(mov, 3)
    assert video.metadata.rotation == -90
    assert all(frame.rgb.shape == (480, 360, 3) for frame in video.frames.values())  # portrait, as displayed


def test_limits_are_enforced_before_decoding(tmp_path):
    path = media.write_video(tmp_path / "v.mp4", [media.astronaut((64, 64))] * 5)
    with pytest.raises(VideoTooLarge):
        read_video(path, 4, budget=DecodeBudget(max_pixels=32 * 32))
    with pytest.raises(VideoTooLarge):
        read_video(path, 4, max_frames=3)
    with pytest.raises(TooFewFrames):
        read_video(path, 4, min_frames=6)
    text = tmp_path / "notes.mp4"
    text.write_text("hello")
    with pytest.raises(NotAVideo):
        read_video(text, 4)


def test_every_decoded_frame_is_held_to_the_pixel_limit(tmp_path):
    """The header says 64x64; later frames are 1024x1024."""
    path = media.resolution_switch(tmp_path / "switch.mkv")
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.width == 64  # what a header check would see
    with pytest.raises(VideoTooLarge, match="a frame of 1024x1024"):
        read_video(path, 6, budget=DecodeBudget(max_pixels=128 * 128))


def test_decode_budget_in_frames_and_time(tmp_path):
    path = media.moving_face_video(tmp_path / "long_gop.mp4", count=60, size=(64, 64), gop=60)
    assert len(read_video(path, 30).frames) == 30
    with pytest.raises(DecodeBudgetExceeded, match="more than 20 decoded frames"):
        read_video(path, 30, budget=DecodeBudget(max_decoded_frames=20))
    with pytest.raises(DecodeBudgetExceeded, match="longer than"):
        read_video(path, 30, budget=DecodeBudget(max_seconds=0.0))


@pytest.mark.parametrize(
    "content",
    [
        b"ffconcat version 1.0\nfile 'other.mp4'\n",  # FFmpeg's concat demuxer would open another file
        b"#EXTM3U\n#EXTINF:10,\nother.mp4\n",  # HLS playlist
        b"\x89PNG\r\n\x1a\n" + b"\0" * 64,  # a still image
    ],
)
def test_only_known_containers_are_opened(tmp_path, content):
    path = tmp_path / "upload.bin"
    path.write_bytes(content)
    with pytest.raises(NotAVideo, match="supported container"):
        read_video(path, 4)
