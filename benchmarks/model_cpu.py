"""Backbone faces/s and temporal-head clips/s on this CPU: PyTorch eager vs ONNX Runtime, one run.

Both runtimes are timed alternately, round by round, so a load change on a shared machine hits
both alike; the table gives medians and the ORT/PyTorch ratio. Writes benchmarks/results/model_cpu.json.
    python benchmarks/model_cpu.py [--rounds 5] [--repository model_repository]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # eager timings swing 10x without it (NOTES.md)

import numpy as np
import onnxruntime
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from export.architectures import Backbone, TemporalHead
from export.checkpoint import demo_model
from export.repository import export_repository

RESULTS = Path(__file__).parent / "results" / "model_cpu.json"


def timed(call, repeat: int) -> float:
    """Mean seconds per call over ``repeat`` calls (one round; rounds are compared by median)."""
    started = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--time", type=int, default=30, help="frames per clip for the temporal head")
    args = parser.parse_args()

    model = demo_model()
    with tempfile.TemporaryDirectory() as repository:
        export_repository(model, Path(repository))
        sessions = {
            name: onnxruntime.InferenceSession(f"{repository}/{name}/1/model.onnx")
            for name in ("deepfake_backbone", "deepfake_temporal")
        }
        backbone_torch, temporal_torch = Backbone(model.detector).eval(), TemporalHead(model.detector).eval()
        size = model.input_size
        rng = np.random.default_rng(0)
        inputs = [
            ("backbone", "faces/s", batch, rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8))
            for batch in (1, 8, 32)
        ]
        inputs += [
            ("temporal", "clips/s", batch, rng.standard_normal((batch, args.time, 2048), dtype=np.float32))
            for batch in (1, 8)
        ]
        torch_module = {"backbone": backbone_torch, "temporal": temporal_torch}
        cases = [
            (
                kind,
                batch,
                unit,
                batch,
                lambda k=kind, x=data: torch_module[k](torch.from_numpy(x)),
                lambda k=kind, x=data: sessions[f"deepfake_{k}"].run(
                    None, {sessions[f"deepfake_{k}"].get_inputs()[0].name: x}
                ),
            )
            for kind, unit, batch, data in inputs
        ]

        rows = []
        with torch.inference_mode():
            for model_name, batch, unit, items, run_torch, run_ort in cases:
                repeat = 1 if model_name == "backbone" and batch > 1 else 5
                run_torch(), run_ort()  # warm-up
                torch_rates, ort_rates = [], []
                for _ in range(args.rounds):
                    torch_rates.append(items / timed(run_torch, repeat))
                    ort_rates.append(items / timed(run_ort, repeat))
                rows.append(
                    {
                        "model": model_name,
                        "batch": batch,
                        "unit": unit,
                        "time": args.time if model_name == "temporal" else None,
                        "pytorch_eager": statistics.median(torch_rates),
                        "onnxruntime": statistics.median(ort_rates),
                    }
                )

    print(f"{'model':<10} {'batch':>5} {'unit':<8} {'PyTorch eager':>14} {'ONNX Runtime':>13} {'ORT/PyTorch':>12}")
    for row in rows:
        row["ratio"] = row["onnxruntime"] / row["pytorch_eager"]
        print(
            f"{row['model']:<10} {row['batch']:>5} {row['unit']:<8} {row['pytorch_eager']:>14.1f}"
            f" {row['onnxruntime']:>13.1f} {row['ratio']:>11.2f}x"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "model_cpu",
                "rounds": args.rounds,
                "input_size": model.input_size,
                "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
                "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__},
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
