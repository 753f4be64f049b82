"""Helpers of benchmarks/triton_perf.sh: the batching-off variant, tool paths, and the summary table."""

from __future__ import annotations

import csv
import json
import re
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any


def _config(path: Path) -> Any:
    """A config.pbtxt read as Triton reads it (the protobuf text format, comments and all)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def variant(repository: Path, target: Path) -> None:
    """A copy of the repository whose configs have no dynamic_batching block (model files linked)."""
    from google.protobuf import text_format

    for source in repository.rglob("*"):
        destination = target / source.relative_to(repository)
        if any(part.endswith(".partial") for part in source.relative_to(repository).parts):
            continue  # an export still being written (or abandoned): not a model Triton loads
        if source.is_dir():
            destination.mkdir(parents=True, exist_ok=True)
        elif source.suffix == ".pbtxt":
            config = _config(source)
            config.ClearField("dynamic_batching")
            destination.write_text(text_format.MessageToString(config))
        else:
            destination.symlink_to(source.resolve()) if source.suffix == ".onnx" else shutil.copy2(source, destination)


def environment() -> None:
    from deploy.triton_local.prepare import prepare

    tools = prepare()
    env = tools.environment()
    for name, value in {
        "PERF_ANALYZER": tools.perf_analyzer,
        "TRITONSERVER": tools.tritonserver,
        "TRITON_BACKENDS": tools.backends,
        "LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"],
        "PATH": env["PATH"],
    }.items():
        print(f"export {name}={shlex.quote(str(value))}")


def input_size(repository: Path) -> None:
    """The backbone's crop side, as perf_analyzer's --shape wants it (\"S,S\")."""
    from model_contract import BACKBONE_INPUT

    config = _config(repository / "deepfake_backbone" / "config.pbtxt")
    faces = next(tensor for tensor in config.input if tensor.name == BACKBONE_INPUT)
    print(f"{faces.dims[0]},{faces.dims[1]}")


def summarise(folder: Path) -> None:
    rows = []
    for path in sorted(folder.glob("*.csv")):
        batching, protocol, model, concurrency = re.match(r"(on|off)_(http|grpc)_(.+)_c(\d+)\.csv", path.name).groups()
        with path.open() as stream:
            record = next(csv.DictReader(stream))
        rows.append(
            {
                "batching": batching,
                "protocol": protocol,
                "model": model,
                "concurrency": int(concurrency),
                "infer_per_s": float(record["Inferences/Second"]),
                "p50_ms": float(record["p50 latency"]) / 1000,
                "p95_ms": float(record["p95 latency"]) / 1000,
            }
        )
    off = {(r["protocol"], r["model"], r["concurrency"]): r["infer_per_s"] for r in rows if r["batching"] == "off"}
    lines = [
        "| model | protocol | concurrency | batching off (inf/s) | batching on (inf/s) | gain | p95 on (ms) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(
        (r for r in rows if r["batching"] == "on"), key=lambda r: (r["model"], r["protocol"], r["concurrency"])
    ):
        base = off.get((r["protocol"], r["model"], r["concurrency"]))
        r["gain_vs_off"] = r["infer_per_s"] / base if base else None
        gain = f"{r['gain_vs_off']:.2f}x" if base else "-"
        lines.append(
            f"| {r['model']} | {r['protocol']} | {r['concurrency']} | {base or 0:.1f} | {r['infer_per_s']:.1f}"
            f" | {gain} | {r['p95_ms']:.1f} |"
        )
    from benchmarks.machine import machine_facts

    summary = {"benchmark": "triton_perf", "machine": machine_facts(), "rows": rows}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (folder / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {
        "variant": lambda: variant(Path(args[0]), Path(args[1])),
        "env": environment,
        "size": lambda: input_size(Path(args[0])),
        "summarise": lambda: summarise(Path(args[0])),
    }[command]()
