"""Backbone faces/s and temporal-head clips/s on this CPU, every engine and precision, one run.

Engines: PyTorch eager (the original's way), ONNX Runtime and OpenVINO on the exported fp32 file,
OpenVINO with bf16 arithmetic on that same file, and the int8 QDQ file (NNCF, calibrated on real
face crops from the seed videos) on ONNX Runtime and on OpenVINO. All are timed alternately,
round by round, so a load change on a shared machine hits all alike; the table gives medians and
each engine's ratio to ONNX Runtime fp32. Inputs are real face crops. Speed does not depend on the
weights' values, so the demo model is used. Writes benchmarks/results/model_cpu.json.

    python benchmarks/model_cpu.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # eager timings swing 10x without it (NOTES.md)

import numpy as np
import onnxruntime
import openvino
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.machine import machine_facts  # noqa: E402
from export.architectures import Backbone, TemporalHead  # noqa: E402
from export.calibration import face_crops  # noqa: E402
from export.checkpoint import demo_model  # noqa: E402
from export.precision import write_int8  # noqa: E402
from export.repository import export_repository  # noqa: E402
from preprocess_service.inference.runtimes import open_model  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "model_cpu.json"
SEED_VIDEOS = ROOT.parent / "shared" / "testdata" / "seed_videos"
BASELINE = "onnxruntime fp32"


def timed(call: Callable[[], object], repeat: int) -> float:
    """Mean seconds per call over ``repeat`` calls (one round; rounds are compared by median)."""
    started = time.perf_counter()
    for _ in range(repeat):
        call()
    return (time.perf_counter() - started) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--time", type=int, default=30, help="frames per clip for the temporal head")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    args = parser.parse_args()

    model = demo_model()
    videos = sorted(p for p in SEED_VIDEOS.iterdir() if p.suffix.lower() in {".mp4", ".mov"})
    crops = np.concatenate(face_crops(videos, model.preprocessing))
    with tempfile.TemporaryDirectory() as folder:
        repository = Path(folder)
        export_repository(model, repository)
        fp32 = repository / "deepfake_backbone/1/model.onnx"
        int8 = repository / "int8.onnx"
        write_int8(fp32, int8, crops[::2], model.export_metadata())
        temporal_file = repository / "deepfake_temporal/1/model.onnx"
        backbones = {
            "pytorch eager": Backbone(model.detector, model.preprocessing).eval(),
            "onnxruntime fp32": open_model(fp32, "onnxruntime", "fp32"),
            "openvino fp32": open_model(fp32, "openvino", "fp32"),
            "openvino bf16": open_model(fp32, "openvino", "bf16"),
            "onnxruntime int8": open_model(int8, "onnxruntime", "int8"),
            "openvino int8": open_model(int8, "openvino", "int8"),
        }
        temporals = {
            "pytorch eager": TemporalHead(model.detector).eval(),
            "onnxruntime fp32": open_model(temporal_file, "onnxruntime", "fp32"),
            "openvino fp32": open_model(temporal_file, "openvino", "fp32"),
        }

        def runner(engine, output: str, name: str, data: np.ndarray) -> Callable[[], object]:
            if isinstance(engine, torch.nn.Module):
                tensor = torch.from_numpy(data)
                return lambda: engine(tensor)
            return lambda: engine.run(output, {name: data})

        rng = np.random.default_rng(0)
        cases = []
        for batch in args.batches:
            faces = np.ascontiguousarray(crops[rng.integers(0, len(crops), batch)])
            engines = {k: runner(v, "features", "faces", faces) for k, v in backbones.items()}
            cases.append(("backbone", batch, "faces/s", engines))
        for batch in (1, 8):
            clips = rng.standard_normal((batch, args.time, 2048), dtype=np.float32)
            engines = {k: runner(v, "probabilities", "features", clips) for k, v in temporals.items()}
            cases.append(("temporal", batch, "clips/s", engines))

        rows = []
        with torch.inference_mode():
            for model_name, batch, unit, engines in cases:
                repeat = 1 if model_name == "backbone" and batch > 1 else 5
                for call in engines.values():
                    call()  # warm-up (OpenVINO compiles shapes lazily)
                rates: dict[str, list[float]] = {name: [] for name in engines}
                for _ in range(args.rounds):
                    for name, call in engines.items():
                        rates[name].append(batch / timed(call, repeat))
                medians = {name: statistics.median(values) for name, values in rates.items()}
                rows.append(
                    {
                        "model": model_name,
                        "batch": batch,
                        "unit": unit,
                        "time": args.time if model_name == "temporal" else None,
                        "rates": medians,
                        "vs_onnxruntime_fp32": {name: rate / medians[BASELINE] for name, rate in medians.items()},
                    }
                )
                print(_format(rows[-1]), flush=True)

    print()
    for row in rows:
        print(_format(row))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "model_cpu",
                "rounds": args.rounds,
                "input_size": model.input_size,
                "inputs": "real face crops from the seed videos",
                "machine": machine_facts(),
                "versions": {
                    "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__,
                    "openvino": openvino.get_version(),
                },
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


def _format(row: dict) -> str:
    cells = "  ".join(
        f"{name} {rate:.1f} ({row['vs_onnxruntime_fp32'][name]:.2f}x)" for name, rate in row["rates"].items()
    )
    return f"{row['model']:<9} batch {row['batch']:>3} {row['unit']:<8} {cells}"


if __name__ == "__main__":
    main()
