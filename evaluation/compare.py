"""``deepfake-eval compare A B``: every metric's change from A to B, and the videos whose verdict flipped."""

from __future__ import annotations

import json
from pathlib import Path

from evaluation.runner import RULES, read_rows


def _flat(summary: dict) -> dict[str, float]:
    """rule/metric -> value, for the metrics that are single numbers."""
    values: dict[str, float] = {}
    for rule in RULES:
        entry = summary["rules"][rule]
        if entry["auc"] is not None:
            values[f"{rule}/auc"] = entry["auc"]
        if entry["calibration"]:
            values[f"{rule}/ece"] = entry["calibration"]["ece"]
        for setting in ("served", "at_0_5"):
            metrics = entry[setting]
            values[f"{rule}/{setting}/accuracy"] = metrics["accuracy"]
            values[f"{rule}/{setting}/balanced_accuracy"] = metrics["balanced_accuracy"]
            for label, per_class in metrics["per_class"].items():
                for name in ("precision", "recall", "f1"):
                    values[f"{rule}/{setting}/{label}/{name}"] = per_class[name]
        if entry["threshold"]:
            values[f"{rule}/threshold"] = entry["threshold"]["value"]
    values["analyzed"] = summary["analyzed"]
    if summary["timing"]["median_total_s"] is not None:
        values["median_total_s"] = summary["timing"]["median_total_s"]
    return values


def compare(first: Path, second: Path) -> dict:
    a, b = (json.loads((folder / "summary.json").read_text()) for folder in (first, second))
    flat_a, flat_b = _flat(a), _flat(b)
    deltas = {
        key: {"a": flat_a[key], "b": flat_b[key], "delta": flat_b[key] - flat_a[key]}
        for key in sorted(flat_a.keys() & flat_b.keys())
    }
    rows_a = {row.video: row for row in read_rows(first / "results.csv")}
    rows_b = {row.video: row for row in read_rows(second / "results.csv")}
    flips = []
    for video in sorted(rows_a.keys() & rows_b.keys()):
        ra, rb = rows_a[video], rows_b[video]
        for rule in RULES:
            before, after = (ra.result(rule) if ra.ok else ra.error), (rb.result(rule) if rb.ok else rb.error)
            if before != after:
                flips.append({"video": video, "label": ra.label, "rule": rule, "a": before, "b": after})
    return {"a": str(first), "b": str(second), "metrics": deltas, "flips": flips}


def format_comparison(result: dict) -> str:
    lines = [f"A = {result['a']}", f"B = {result['b']}", "", f"{'metric':<44} {'A':>9} {'B':>9} {'B - A':>9}"]
    for key, values in result["metrics"].items():
        lines.append(f"{key:<44} {values['a']:>9.4f} {values['b']:>9.4f} {values['delta']:>+9.4f}")
    lines += ["", f"{len(result['flips'])} verdict flip(s)"]
    lines += [f"  {f['video']} (true {f['label']}, {f['rule']}): {f['a']} -> {f['b']}" for f in result["flips"]]
    return "\n".join(lines)
