"""Frame and face images for display, only when DEEPFAKE_ARTIFACTS=1.

Written after the response is sent (a background task), never on the hot path; served as static
files under /artifacts; folders older than the TTL are removed by a periodic sweep.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from pathlib import Path

import cv2
import numpy as np

URL_PREFIX = "/artifacts"


def new_analysis_id() -> str:
    return uuid.uuid4().hex


def frame_url(analysis_id: str, frame_index: int) -> str:
    return f"{URL_PREFIX}/{analysis_id}/frame_{frame_index}.jpg"


def face_url(analysis_id: str, frame_index: int) -> str:
    return f"{URL_PREFIX}/{analysis_id}/face_{frame_index}.jpg"


def write_images(root: Path, analysis_id: str, images: dict[str, np.ndarray]) -> None:
    """``images``: file name → RGB array. Written to a temporary folder, then renamed whole."""
    final = root / analysis_id
    staging = root / f".{analysis_id}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    for name, rgb in images.items():
        cv2.imwrite(str(staging / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    staging.rename(final)


def sweep(root: Path, ttl_s: float) -> int:
    if not root.is_dir():
        return 0
    cutoff, removed = time.time() - ttl_s, 0
    for folder in root.iterdir():
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


async def sweep_forever(root: Path, ttl_s: float) -> None:
    while True:
        await asyncio.to_thread(sweep, root, ttl_s)
        await asyncio.sleep(max(min(ttl_s / 4, 300), 1))
