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
        raise DatasetError(f"{source} is neither a folder nor a CSV file")
    videos = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        label = _label_of_folder(folder.name)
        if label is None:
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(source).parts):
                videos.append(LabelledVideo(path.relative_to(source).as_posix(), path, label))
    if not videos:
        raise DatasetError(f"{source} has no REAL*/ or FAKE*/ folder with files in it")
    return videos


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
