"""Frame and face images for display, only when DEEPFAKE_ARTIFACTS=1.

Written after the response is sent (a background task), never on the hot path. They show people's
faces, so they belong to the analysis's owner exactly as its history row does: each is stored under
``<artifacts_dir>/<owner folder>/<analysis id>/`` and served by a route that checks the caller
(routes/artifacts.py), never by a static mount. Folders older than the TTL are removed by a
periodic sweep; erasing or purging an analysis removes its folder too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

URL_PREFIX = "/artifacts"
ANALYSIS_ID = re.compile(r"^[0-9a-f]{32}$")
IMAGE_NAME = re.compile(r"^(frame|face)_\d{1,9}\.jpg$")


def new_analysis_id() -> str:
    return uuid.uuid4().hex


def frame_url(analysis_id: str, frame_index: int) -> str:
    return f"{URL_PREFIX}/{analysis_id}/frame_{frame_index}.jpg"


def face_url(analysis_id: str, frame_index: int) -> str:
    return f"{URL_PREFIX}/{analysis_id}/face_{frame_index}.jpg"


def owner_folder(root: Path, owner: str) -> Path:
    """A fixed-length folder name per owner: key ids never become paths."""
    return root / hashlib.sha256(owner.encode()).hexdigest()[:24]


def write_images(root: Path, owner: str, analysis_id: str, images: dict[str, np.ndarray]) -> None:
    """``images``: file name → RGB array. Written to a temporary folder, then renamed whole."""
    folder = owner_folder(root, owner)
    final = folder / analysis_id
    staging = folder / f".{analysis_id}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    for name, rgb in images.items():
        cv2.imwrite(str(staging / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    staging.rename(final)


def find_image(root: Path, owner: str | None, analysis_id: str, name: str) -> Path | None:
    """The image, if it exists and the owner may see it (``owner`` None: any owner, the operator)."""
    if not ANALYSIS_ID.fullmatch(analysis_id) or not IMAGE_NAME.fullmatch(name) or not root.is_dir():
        return None
    folders = [owner_folder(root, owner)] if owner is not None else [p for p in root.iterdir() if p.is_dir()]
    for folder in folders:
        path = folder / analysis_id / name
        if path.is_file():
            return path
    return None


def remove(root: Path, analysis_ids: Iterable[str]) -> int:
    """Removes these analyses' folders, whoever owns them (the ids come from erased history rows)."""
    wanted = {analysis_id for analysis_id in analysis_ids if ANALYSIS_ID.fullmatch(analysis_id)}
    if not wanted or not root.is_dir():
        return 0
    removed = 0
    for folder in (p for p in root.iterdir() if p.is_dir()):
        for analysis_id in wanted:
            if (folder / analysis_id).is_dir():
                shutil.rmtree(folder / analysis_id, ignore_errors=True)
                removed += 1
    return removed


def sweep(root: Path, ttl_s: float) -> int:
    if not root.is_dir():
        return 0
    cutoff, removed = time.time() - ttl_s, 0
    for owner in (p for p in root.iterdir() if p.is_dir()):
        for folder in _entries(owner):
            if folder.is_dir() and _modified(folder) < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                removed += 1
        with contextlib.suppress(OSError):  # an owner with nothing left keeps no folder (not empty: stays)
            owner.rmdir()
    return removed


def _entries(folder: Path) -> list[Path]:
    """A folder's entries; none if another replica's sweep removed it meanwhile."""
    try:
        return list(folder.iterdir())
    except FileNotFoundError:
        return []


def _modified(path: Path) -> float:
    """Its mtime; +inf (never swept) if it vanished meanwhile: a staging folder renamed, a peer's sweep."""
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


async def sweep_forever(root: Path, ttl_s: float) -> None:
    while True:
        await asyncio.to_thread(sweep, root, ttl_s)
        await asyncio.sleep(max(min(ttl_s / 4, 300), 1))
