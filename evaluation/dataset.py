"""Which videos, with which true label: ``REAL*/`` and ``FAKE*/`` folders, or a CSV of path,label."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

LABELS = ("FAKE", "REAL")


class DatasetError(Exception):
    """No labelled videos, or a label that is neither FAKE nor REAL."""


@dataclass(frozen=True)
class LabelledVideo:
    key: str  # the video's name in results.csv: its path relative to the dataset
    path: Path
    label: str  # FAKE or REAL


def _label_of_folder(name: str) -> str | None:
    upper = name.upper()
    return next((label for label in LABELS if upper.startswith(label)), None)


def labelled_videos(source: Path) -> list[LabelledVideo]:
    """Every file under a REAL*/FAKE* folder counts (a broken one becomes an error row, not a skip);
    hidden files do not."""
    if source.is_file():
        return _from_csv(source)
    if not source.is_dir():
        raise DatasetError(f"{source} is neither a folder nor a CSV file\n{_how_to_label(source, None)}")
    videos = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        label = _label_of_folder(folder.name)
        if label is None:
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(source).parts):
                videos.append(LabelledVideo(path.relative_to(source).as_posix(), path, label))
    if not videos:
        example = _example_file(source)
        raise DatasetError(
            f"{source} has no REAL*/ or FAKE*/ folder with files in it\n{_how_to_label(source, example)}"
        )
    return videos


LIKELY_VIDEO = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi"}  # only to pick the hint's example file


def _example_file(folder: Path) -> Path | None:
    """A file of the folder's own to name in the hint: a video if one looks like it (not a checksum
    list beside them), the folder's own before any deeper."""
    for candidates in (folder.iterdir(), folder.rglob("*")):
        files = sorted(p for p in candidates if p.is_file() and not p.name.startswith("."))
        if files:
            return next((p for p in files if p.suffix.lower() in LIKELY_VIDEO), files[0])
    return None


def _how_to_label(source: Path, example: Path | None) -> str:
    """Both ways to give the labels, in the user's own paths: a new user's folder of videos has none,
    and the error is the only place they would learn that a CSV works as well as folders. The CSV
    example names one of their files as written from here, which is right for a CSV saved here."""
    folder = source if source.is_dir() else Path("videos")
    line = f"{(example or folder / 'clip.mp4').as_posix()},REAL"
    return (
        "Label the videos one of two ways:\n"
        f"  folders: {folder}/REAL/... and {folder}/FAKE/... (any folder whose name starts with REAL or FAKE)\n"
        "  or a CSV of path,label, one video per line (paths relative to the CSV's folder, or absolute), e.g.\n"
        f"      {line}\n"
        "  saved as labels.csv here, then: deepfake-eval labels.csv"
    )


def _from_csv(path: Path) -> list[LabelledVideo]:
    videos = []
    with path.open(newline="") as stream:
        for number, row in enumerate(csv.reader(stream), start=1):
            if not row or (number == 1 and row[0].strip().lower() in {"path", "video", "file"}):
                continue
            if len(row) < 2:
                raise DatasetError(f"{path}:{number}: expected path,label")
            label = row[1].strip().upper()
            if label not in LABELS:
                raise DatasetError(f"{path}:{number}: label {row[1]!r} is neither FAKE nor REAL")
            video = Path(row[0].strip())
            video = video if video.is_absolute() else path.parent / video
            videos.append(LabelledVideo(row[0].strip(), video, label))
    if not videos:
        raise DatasetError(f"{path} lists no videos")
    return videos
