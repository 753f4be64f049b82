"""The work before the model, per seed video: decoding, MediaPipe, and the Haar fallback's full search
against its exact banded search (benchmarks/haar_banded.py, kept out of the service), same run, side by side.

Each video's 30 sampled frames (the service's DEEPFAKE_NUM_FRAMES default) are decoded as the service
decodes them; MediaPipe and both Haar searches then run on every frame, Haar whether MediaPipe found a
face or not. The two Haar searches are timed alternately, round by round (the order swapped each round),
so a load change on a shared machine hits both alike; a frame's time is its fastest round, and the table
gives the median over the frames. Every frame's pruned box is checked to be the full search's. The
"used" columns count the frames where the service's ``find`` takes MediaPipe's box, Haar's, or none;
the "fallback" columns are Haar's medians on the frames where the service runs it (MediaPipe found no
face), and the last line sums those frames' Haar time over all videos.
Prints a table and writes benchmarks/results/front.json.

    python benchmarks/front.py [--rounds 3] [--max-side 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks import haar_banded  # noqa: E402
from benchmarks.machine import machine_facts  # noqa: E402
from preprocess_service import faces  # noqa: E402
from preprocess_service.face_model import DEFAULT_PATH  # noqa: E402
from preprocess_service.video import read_video  # noqa: E402

SEED_VIDEOS = ROOT.parent / "shared" / "testdata" / "seed_videos"
RESULTS = Path(__file__).parent / "results" / "front.json"
FRAMES = 30
T = TypeVar("T")


def haar_gray(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The grey frame ``detect_haar`` searches, and its scale (as detect_haar makes them)."""
    scale = min(1.0, max_side / max(rgb.shape[:2])) if max_side else 1.0
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return gray, scale


def timed(function: Callable[..., T], *args: Any) -> tuple[float, T]:
    started = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - started, result


def measure(video: Path, detector: faces.FaceDetector, rounds: int, max_side: int) -> dict:
    decode_s, sampled = timed(read_video, video, FRAMES)
    rgbs = [frame.rgb for _, frame in sorted(sampled.frames.items()) if frame.rgb is not None]
    cascade = detector._haar()
    mediapipe_ms, full_ms, pruned_ms, used = [], [], [], {"mediapipe": 0, "haar": 0, "none": 0}
    fallback_full, fallback_pruned = [], []
    for rgb in rgbs:
        mediapipe_s, mediapipe_box = timed(detector.detect_mediapipe, rgb)
        found = detector.find(rgb)
        used[found[1] if found else "none"] += 1
        gray, _ = haar_gray(rgb, max_side)
        best = {"full": float("inf"), "pruned": float("inf")}
        boxes = {}
        for round_ in range(rounds):
            order = ("full", "pruned") if round_ % 2 == 0 else ("pruned", "full")
            for name in order:
                search = haar_banded.largest_full if name == "full" else haar_banded.largest
                seconds, boxes[name] = timed(search, cascade, gray)
                best[name] = min(best[name], seconds)
        if boxes["full"] != boxes["pruned"]:
            raise SystemExit(f"{video.name}: the pruned search gave {boxes['pruned']}, the full {boxes['full']}")
        mediapipe_ms.append(mediapipe_s * 1000)
        full_ms.append(best["full"] * 1000)
        pruned_ms.append(best["pruned"] * 1000)
        if found is None or found[1] == "haar":  # the service runs Haar on this frame (find's own fallback)
            fallback_full.append(best["full"] * 1000)
            fallback_pruned.append(best["pruned"] * 1000)
    height, width = rgbs[0].shape[:2]
    return {
        "video": video.name,
        "frame": f"{width}x{height}",
        "frames": len(rgbs),
        "decode_ms_per_frame": decode_s * 1000 / len(rgbs),
        "mediapipe_ms": statistics.median(mediapipe_ms),
        "haar_full_ms": statistics.median(full_ms),
        "haar_pruned_ms": statistics.median(pruned_ms),
        "haar_speedup": statistics.median(full_ms) / statistics.median(pruned_ms),
        "haar_full_ms_total": sum(full_ms),
        "haar_pruned_ms_total": sum(pruned_ms),
        "fallback_frames": len(fallback_full),
        "haar_full_ms_fallback": statistics.median(fallback_full) if fallback_full else None,
        "haar_pruned_ms_fallback": statistics.median(fallback_pruned) if fallback_pruned else None,
        "haar_full_ms_fallback_total": sum(fallback_full),
        "haar_pruned_ms_fallback_total": sum(fallback_pruned),
        "used": used,
        "identical_boxes": len(rgbs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timings per Haar search per frame (fastest kept)")
    parser.add_argument("--max-side", type=int, default=0, help="DEEPFAKE_FACE_HAAR_MAX_SIDE (0: full frame)")
    args = parser.parse_args()
    videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
    detector = faces.FaceDetector(DEFAULT_PATH, haar_max_side=args.max_side)
    try:
        detector.detect_mediapipe(np.zeros((64, 64, 3), np.uint8))  # warm-up
        rows = [measure(video, detector, args.rounds, args.max_side) for video in videos]
    finally:
        detector.close()
    full, pruned = sum(r["haar_full_ms_total"] for r in rows), sum(r["haar_pruned_ms_total"] for r in rows)
    fallback_full = sum(r["haar_full_ms_fallback_total"] for r in rows)
    fallback_pruned = sum(r["haar_pruned_ms_fallback_total"] for r in rows)
    fallback_frames = sum(r["fallback_frames"] for r in rows)
    print(
        f"{'video':<22} {'frame':>8} {'decode':>7} {'mediapipe':>9} {'haar old':>9} {'haar new':>9} {'x':>6}"
        f" {'fallback old':>12} {'new':>6} {'used mp/haar/none':>18}"
    )
    for r in rows:
        used = r["used"]
        where_full, where_pruned = r["haar_full_ms_fallback"], r["haar_pruned_ms_fallback"]
        print(
            f"{r['video']:<22} {r['frame']:>8} {r['decode_ms_per_frame']:>7.1f} {r['mediapipe_ms']:>9.1f}"
            f" {r['haar_full_ms']:>9.1f} {r['haar_pruned_ms']:>9.1f} {r['haar_speedup']:>5.2f}x"
            f" {f'{where_full:.1f}' if where_full is not None else '-':>12}"
            f" {f'{where_pruned:.1f}' if where_pruned is not None else '-':>6}"
            f" {used['mediapipe']:>8}/{used['haar']}/{used['none']}"
        )
    print(
        f"ms per frame, medians over each video's {FRAMES} frames (fastest of {args.rounds} rounds each);"
        f" Haar over all {sum(r['frames'] for r in rows)} frames: {full:.0f} ms old, {pruned:.0f} ms new"
        f" ({full / pruned:.2f}x), every box identical; on the {fallback_frames} frames where the service runs Haar:"
        f" {fallback_full:.0f} ms old, {fallback_pruned:.0f} ms new"
        f" ({fallback_full / fallback_pruned if fallback_pruned else float('nan'):.2f}x)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "front",
                "frames_per_video": FRAMES,
                "rounds": args.rounds,
                "haar_max_side": args.max_side,
                "haar_band_ratio": haar_banded.HAAR_BAND_RATIO,
                "opencv": cv2.__version__,
                "opencv_threads": cv2.getNumThreads(),
                "machine": machine_facts(),
                "rows": rows,
                "haar_full_ms_total": full,
                "haar_pruned_ms_total": pruned,
                "fallback_frames": fallback_frames,
                "haar_full_ms_fallback_total": fallback_full,
                "haar_pruned_ms_fallback_total": fallback_pruned,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
