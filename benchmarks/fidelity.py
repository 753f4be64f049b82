"""Fidelity to the original service: per-frame and per-video |ΔP(FAKE)| of the service against the
original's way (benchmarks/baseline_original.py), per preprocessing profile, on the seed videos.

The model reacts to its input (testing/sensitive_model.py), so every preprocessing difference shows.
The service runs over real HTTP on the exported ONNX files. Rows with other settings than the
defaults show what a faster or older variant costs in fidelity. Prints a table and writes
benchmarks/results/fidelity.json.

    python benchmarks/fidelity.py
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.baseline_original import OriginalPipeline  # noqa: E402
from benchmarks.machine import machine_facts  # noqa: E402
from export.checkpoint import LoadedModel  # noqa: E402
from export.repository import export_repository  # noqa: E402
from model_contract import PROFILES  # noqa: E402
from preprocess_service.settings import Settings  # noqa: E402
from testing.sensitive_model import sensitive_model  # noqa: E402
from testing.server import post_file, running_service  # noqa: E402

SEED_VIDEOS = ROOT.parent / "shared" / "testdata" / "seed_videos"
RESULTS = Path(__file__).parent / "results" / "fidelity.json"


def measure(label: str, model: LoadedModel, served_model: LoadedModel, settings: dict, videos: list[Path]) -> dict:
    """The service (``served_model``: the same weights, maybe another profile) against the reference."""
    reference = OriginalPipeline(model, legacy_app=model.preprocessing.crop == "full_frame")
    with tempfile.TemporaryDirectory() as folder:
        export_repository(served_model, Path(folder) / "repository")
        config = Settings(model_repository=Path(folder) / "repository", keys_dir=Path(folder) / "keys", **settings)
        per_frame, per_video, compared, total, boxes_differ = [], [], 0, 0, 0
        with running_service(config) as url:
            for video in videos:
                expected = reference.analyze(video).frames
                rows = post_file(url, video, "/predict_csv/").json()["frames_csv"]
                full_frame = model.preprocessing.crop == "full_frame"
                pairs = [
                    (f, r) for f, r in zip(expected, rows, strict=True) if full_frame or f.detector == r["detector"]
                ]
                deltas = [abs(f.p_fake - r["p_fake"]) for f, r in pairs]
                boxes_differ += sum(
                    1 for f, r in pairs if r["box"] and f.detector != "centre" and tuple(r["box"]) != f.box
                )
                per_frame += deltas
                per_video.append(
                    abs(statistics.mean(f.p_fake for f, _ in pairs) - statistics.mean(r["p_fake"] for _, r in pairs))
                )
                compared, total = compared + len(pairs), total + len(rows)
    reference.close()
    return {
        "variant": label,
        "profile": served_model.preprocessing.name,
        "settings": settings,
        "frames_compared": compared,
        "frames": total,
        "boxes_differ": boxes_differ,
        "per_frame_max": max(per_frame),
        "per_frame_mean": statistics.mean(per_frame),
        "per_video_max": max(per_video),
    }


def main() -> None:
    videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
    attention = sensitive_model(videos)
    cv2_resize = dataclasses.replace(attention.preprocessing, name="attention-default+cv2_linear", resize="cv2_linear")
    legacy = sensitive_model(videos, family="legacy", profile=PROFILES["legacy-default"])
    legacy_app = sensitive_model(videos, family="legacy", profile=PROFILES["original-legacy-app"])
    cases = [
        ("attention-default (the default)", attention, attention, {}),
        (
            "attention-default, Haar on a 320-px copy (DEEPFAKE_FACE_HAAR_MAX_SIDE=320)",
            attention,
            attention,
            {"face_haar_max_side": 320},
        ),
        (
            "attention-default resized with cv2 INTER_LINEAR (the last release's resize)",
            attention,
            dataclasses.replace(attention, preprocessing=cv2_resize),
            {},
        ),
        ("legacy-default", legacy, legacy, {}),
        ("original-legacy-app", legacy_app, legacy_app, {}),
    ]
    rows = []
    print(f"{'variant':<80} {'frames':>7} {'max |Δ| frame':>14} {'mean':>9} {'max |Δ| video':>14}")
    for label, model, served, settings in cases:
        rows.append(measure(label, model, served, settings, videos))
        r = rows[-1]
        print(
            f"{label:<80} {r['frames_compared']:>3}/{r['frames']:<3} {r['per_frame_max']:>14.5f}"
            f" {r['per_frame_mean']:>9.5f} {r['per_video_max']:>14.5f}",
            flush=True,
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"benchmark": "fidelity", "machine": machine_facts(), "videos": [v.name for v in videos], "rows": rows},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
