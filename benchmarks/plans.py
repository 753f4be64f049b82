"""The precision plan tables of ``deepfake-export --precision auto`` for the sensitive test model and
the demo model, in one run: every plan on every runtime, its backbone faces/s and its max |ΔP(FAKE)|
per held-out frame and video against fp32. Prints both tables, writes benchmarks/results/plans.json.

    python benchmarks/plans.py [--max-delta 0.01]

The sensitive model (random weights, BatchNorm statistics from real crops, residual branches at 0.2)
is the one whose P(FAKE) reacts to rounding, exported twice: centred on single frames (per-frame
P(FAKE) spread, whole sequences saturate) and on whole sequences (the reverse), so that both columns
mean something. The demo model answers ~0.455 to everything, so every plan passes on it and its
table shows speed only.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import machine_facts  # noqa: E402

SEED_VIDEOS = ROOT.parent / "shared" / "testdata" / "seed_videos"
RESULTS = Path(__file__).parent / "results" / "plans.json"


def plan_table(name: str, source: list[str], folder: Path, bound: float) -> dict:
    from export.__main__ import main as export_main
    from export.plan_search import format_plans
    from model_contract.precision_plans import read_plans

    repository = folder / name
    code = export_main(
        [*source, "--repository", str(repository), "--precision", "auto", "--max-delta", str(bound)]
        + ["--calibration-videos", str(SEED_VIDEOS)]
    )
    table = read_plans(repository)
    if code != 0 or table is None:
        raise SystemExit(f"{name}: export failed ({code})")
    print(f"\n== {name}\n{format_plans(table)}", flush=True)
    return {
        "model": name,
        "chosen": asdict(table.chosen) if table.chosen else None,
        "held_out": table.held_out,
        "rows": [
            {**asdict(row), "ok": row.ok, "vs_fp32": row.faces_per_s / table.fp32_faces_per_s()} for row in table.rows
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-delta", type=float, default=0.01)
    args = parser.parse_args()
    from testing.sensitive_model import save_checkpoint, sensitive_model

    with tempfile.TemporaryDirectory(prefix="plans-") as scratch:
        folder = Path(scratch)
        videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
        tables = []
        for centre in ("frames", "sequences"):  # one last layer cannot spread both scores (sensitive_model)
            model = sensitive_model(videos, residual_scale=0.2, centre_on=centre)
            checkpoint = save_checkpoint(model, folder / f"sensitive-{centre}.pth")
            name = f"sensitive (residual branches at 0.2, centred on {centre})"
            tables.append(plan_table(name, ["--checkpoint", str(checkpoint)], folder, args.max_delta))
        tables.append(plan_table("demo (untrained)", ["--demo"], folder, args.max_delta))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"benchmark": "plans", "bound": args.max_delta, "machine": machine_facts(), "tables": tables}, indent=2
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
