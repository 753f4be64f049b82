"""summary.json: every metric per verdict rule, at the service's own answer, at 0.5 and at a
threshold chosen on the set, plus timings and the failures.

The timings come from answers analyzed in this evaluation only: a cached answer carries the times
of the analysis that first made it (another run, another load, maybe another machine), and an
answer that does not say whether it was cached (a results.csv from before the column) may be one.
Both are counted and left out, and ``timing`` says how many, so the report can say so."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict

import numpy as np

from evaluation.metrics import auc, calibration, choose_threshold, classification, roc
from evaluation.runner import RULES, ResultRow


def summarise(
    rows: list[ResultRow], model: dict, threshold_mode: str = "balanced_accuracy", target_fpr: float = 0.05
) -> dict:
    analyzed = [row for row in rows if row.ok]
    is_fake = np.array([row.label == "FAKE" for row in analyzed], dtype=bool)
    both_classes = 0 < is_fake.sum() < len(is_fake)
    rules = {}
    for rule in RULES:
        p_fake = np.array([row.p_fake(rule) for row in analyzed], dtype=float)
        served = np.array([row.result(rule) == "FAKE" for row in analyzed], dtype=bool)
        entry: dict = {
            "served": classification(is_fake, served),
            "at_0_5": classification(is_fake, p_fake >= 0.5),
            "p_fake": {
                "FAKE": p_fake[is_fake].tolist(),
                "REAL": p_fake[~is_fake].tolist(),
            },
        }
        if len(analyzed) and both_classes:
            curve = roc(is_fake, p_fake)
            threshold = choose_threshold(is_fake, p_fake, threshold_mode, target_fpr)
            entry |= {
                "auc": auc(curve),
                "roc": asdict(curve),
                "calibration": calibration(is_fake, p_fake),
                "threshold": {
                    "mode": threshold_mode,
                    "target_fpr": target_fpr if threshold_mode == "fpr" else None,
                    "value": threshold,
                    "metrics": classification(is_fake, p_fake >= threshold),
                },
            }
        else:
            entry |= {"auc": None, "roc": None, "calibration": None, "threshold": None}
        rules[rule] = entry
    measured = [row for row in analyzed if row.cached is False]
    totals = [row.total_s for row in measured if row.total_s is not None]
    cached = sum(row.cached is True for row in analyzed)
    return {
        "model": model,
        "untrained_demo": bool(model.get("untrained_demo")),
        "videos": len(rows),
        "analyzed": len(analyzed),
        "by_label": dict(Counter(row.label for row in rows)),
        "errors": dict(Counter(row.error for row in rows if not row.ok)),
        "failed": [{"video": row.video, "label": row.label, "error": row.error} for row in rows if not row.ok],
        "both_classes": bool(both_classes),
        "cached": cached,  # answers that came from the service's history, not analyzed in this run
        "rules": rules,
        "timing": {
            "measured": len(measured),
            "left_out": {"cached": cached, "not_recorded": sum(row.cached is None for row in analyzed)},
            "median_total_s": float(np.median(totals)) if totals else None,
            "points": [
                {"video": row.video, "duration_s": row.duration_s, "total_s": row.total_s}
                for row in measured
                if row.duration_s is not None
            ],
        },
    }
