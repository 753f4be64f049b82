"""preprocess_service.artifacts: the frame and face images kept for display.

They show people's faces, so they belong to an owner exactly as a history row does: another owner
must never find them, names from a URL must never reach outside the folder, and removal and the
TTL sweep must really delete them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from preprocess_service.artifacts import (
    face_url,
    find_image,
    frame_url,
    new_analysis_id,
    owner_folder,
    remove,
    sweep,
    write_images,
)

RED = np.zeros((16, 24, 3), np.uint8)
RED[..., 0] = 255  # RGB: pure red


def images() -> dict[str, np.ndarray]:
    return {"frame_3.jpg": RED, "face_3.jpg": RED[:8, :8].copy()}


def age(folder: Path, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(folder, (past, past))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "artifacts"


def test_new_analysis_ids_are_distinct_32_hex() -> None:
    ids = {new_analysis_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)


def test_urls_name_the_analysis_and_frame() -> None:
    assert frame_url("ab" * 16, 7) == f"/artifacts/{'ab' * 16}/frame_7.jpg"
    assert face_url("ab" * 16, 7) == f"/artifacts/{'ab' * 16}/face_7.jpg"


def test_owner_folders_are_fixed_length_and_never_the_key_id(root: Path) -> None:
    hostile = owner_folder(root, "../../etc")
    assert hostile.parent == root
    assert len(hostile.name) == 24 and ".." not in hostile.name
    assert owner_folder(root, "alice") != owner_folder(root, "bob")


def test_written_images_are_found_by_their_owner(root: Path) -> None:
    analysis = new_analysis_id()
    write_images(root, "alice", analysis, images())
    frame = find_image(root, "alice", analysis, "frame_3.jpg")
    assert frame is not None and frame.is_file()
    assert frame.parent == owner_folder(root, "alice") / analysis
    assert find_image(root, "alice", analysis, "face_3.jpg") is not None


def test_written_images_are_rgb_jpegs_of_the_arrays(root: Path) -> None:
    analysis = new_analysis_id()
    write_images(root, "alice", analysis, images())
    path = find_image(root, "alice", analysis, "frame_3.jpg")
    assert path is not None and path.read_bytes()[:3] == b"\xff\xd8\xff"  # JPEG
    bgr = cv2.imread(str(path))
    assert bgr.shape == RED.shape
    blue, green, red = (int(bgr[..., c].mean()) for c in range(3))
    assert red > 240 and blue < 15 and green < 15  # red stays red: the RGB → BGR swap happened


def test_no_staging_folder_is_left_after_writing(root: Path) -> None:
    analysis = new_analysis_id()
    write_images(root, "alice", analysis, images())
    assert [p.name for p in owner_folder(root, "alice").iterdir()] == [analysis]


def test_another_owner_does_not_find_them(root: Path) -> None:
    analysis = new_analysis_id()
    write_images(root, "alice", analysis, images())
    assert find_image(root, "bob", analysis, "frame_3.jpg") is None


def test_owner_none_the_operator_finds_any_owners(root: Path) -> None:
    first, second = new_analysis_id(), new_analysis_id()
    write_images(root, "alice", first, images())
    write_images(root, "bob", second, images())
    assert find_image(root, None, first, "frame_3.jpg") == owner_folder(root, "alice") / first / "frame_3.jpg"
    assert find_image(root, None, second, "frame_3.jpg") == owner_folder(root, "bob") / second / "frame_3.jpg"


def test_an_image_that_was_not_written_is_not_found(root: Path) -> None:
    analysis = new_analysis_id()
    write_images(root, "alice", analysis, images())
    assert find_image(root, "alice", analysis, "frame_4.jpg") is None
    assert find_image(root, "alice", new_analysis_id(), "frame_3.jpg") is None


def test_nothing_is_found_before_anything_was_written(root: Path) -> None:
    assert find_image(root, None, new_analysis_id(), "frame_3.jpg") is None


@pytest.mark.parametrize(
    "bad_id",
    ["../x", "..", "", "A" * 32, "a" * 31, "a" * 33, "g" * 32, "a" * 31 + "/", "a" * 32 + "\n"],
)
def test_a_bad_analysis_id_finds_nothing(root: Path, bad_id: str) -> None:
    write_images(root, "alice", "a" * 32, images())
    assert find_image(root, "alice", bad_id, "frame_3.jpg") is None
    assert find_image(root, None, bad_id, "frame_3.jpg") is None


@pytest.mark.parametrize(
    "bad_name",
    ["frame_1.png", "../frame_3.jpg", "frame_3.jpg/..", "frame_.jpg", "thumb_3.jpg", "frame_3.jpeg", "frame_3.jpg\n"],
)
def test_a_bad_image_name_finds_nothing(root: Path, bad_name: str) -> None:
    analysis = new_analysis_id()
    write_images(root, "alice", analysis, {"frame_3.jpg": RED, "frame_1.png": RED})
    assert find_image(root, "alice", analysis, bad_name) is None


def test_a_path_traversal_name_cannot_reach_another_owners_image(root: Path) -> None:
    mine, theirs = new_analysis_id(), new_analysis_id()
    write_images(root, "alice", mine, images())
    write_images(root, "bob", theirs, images())
    bob = owner_folder(root, "bob").name
    assert find_image(root, "alice", mine, f"../../{bob}/{theirs}/frame_3.jpg") is None


def test_remove_deletes_the_analysis_folder_whoever_owns_it(root: Path) -> None:
    first, second, kept = new_analysis_id(), new_analysis_id(), new_analysis_id()
    write_images(root, "alice", first, images())
    write_images(root, "bob", second, images())
    write_images(root, "alice", kept, images())
    assert remove(root, [first, second]) == 2
    assert not (owner_folder(root, "alice") / first).exists()
    assert not (owner_folder(root, "bob") / second).exists()
    assert find_image(root, "alice", kept, "frame_3.jpg") is not None


def test_remove_ignores_bad_and_unknown_ids(root: Path) -> None:
    analysis = new_analysis_id()
    write_images(root, "alice", analysis, images())
    assert remove(root, ["..", "../x", owner_folder(root, "alice").name, new_analysis_id()]) == 0
    assert find_image(root, "alice", analysis, "frame_3.jpg") is not None


def test_remove_without_a_folder_is_nothing(root: Path) -> None:
    assert remove(root, [new_analysis_id()]) == 0


def test_sweep_removes_folders_older_than_the_ttl_and_keeps_newer(root: Path) -> None:
    old, new = new_analysis_id(), new_analysis_id()
    write_images(root, "alice", old, images())
    write_images(root, "alice", new, images())
    age(owner_folder(root, "alice") / old, 7200)
    assert sweep(root, ttl_s=3600) == 1
    assert find_image(root, "alice", old, "frame_3.jpg") is None
    assert find_image(root, "alice", new, "frame_3.jpg") is not None
    assert owner_folder(root, "alice").is_dir()  # not empty: stays


def test_sweep_removes_an_owner_folder_left_empty(root: Path) -> None:
    old, other = new_analysis_id(), new_analysis_id()
    write_images(root, "alice", old, images())
    write_images(root, "bob", other, images())
    age(owner_folder(root, "alice") / old, 7200)
    assert sweep(root, ttl_s=3600) == 1
    assert not owner_folder(root, "alice").exists()
    assert owner_folder(root, "bob").is_dir()


def test_sweep_without_a_folder_is_nothing(root: Path) -> None:
    assert sweep(root, ttl_s=1) == 0


def test_the_sweep_skips_what_vanishes_while_it_walks(root: Path) -> None:
    """A staging folder renamed, or a peer replica's sweep, between listing and stat: skipped, no error.
    (CI once failed on this race in a test's own walk; the sweep walks the same folders.)"""
    from preprocess_service.artifacts import _entries, _modified

    assert _entries(root / "gone") == []
    assert _modified(root / "gone" / ".x.partial") == float("inf")
    write_images(root, "alice", "ab" * 16, images())
    assert _modified(owner_folder(root, "alice") / ("ab" * 16)) <= time.time()
