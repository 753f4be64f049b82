"""The numbers a checkpoint is judged by, per verdict rule, computed here from the rows alone.

FAKE is the positive class (P(FAKE) is the score). Written out with numpy rather than taken from
scikit-learn so that the tests can check every number against scikit-learn on the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Curve:
    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]


def roc(is_fake: np.ndarray, p_fake: np.ndarray) -> Curve:
    """Points at every distinct score, highest first, starting at (0, 0) (threshold +inf)."""
    order = np.argsort(-p_fake, kind="mergesort")
    scores, positives = p_fake[order], is_fake[order].astype(float)
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(positives)[distinct]
    fps = (distinct + 1) - tps
    tpr = np.r_[0.0, tps / max(positives.sum(), 1)]
    fpr = np.r_[0.0, fps / max(len(positives) - positives.sum(), 1)]
    return Curve(fpr.tolist(), tpr.tolist(), [float("inf"), *scores[distinct].tolist()])


def auc(curve: Curve) -> float:
    return float(np.trapezoid(curve.tpr, curve.fpr))


def calibration(is_fake: np.ndarray, p_fake: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability diagram over P(FAKE) in equal-width bins (empty bins left out), and the expected
    calibration error: the count-weighted mean |mean P(FAKE) - fraction FAKE| over the bins."""
    index = np.clip(np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], p_fake, side="right"), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    predicted = np.bincount(index, weights=p_fake, minlength=bins)
    observed = np.bincount(index, weights=is_fake.astype(float), minlength=bins)
    used = counts > 0
    mean_predicted, fraction_fake = predicted[used] / counts[used], observed[used] / counts[used]
    ece = float(np.sum(counts[used] * np.abs(mean_predicted - fraction_fake)) / max(len(p_fake), 1))
    return {
        "mean_predicted": mean_predicted.tolist(),
        "fraction_fake": fraction_fake.tolist(),
        "counts": counts[used].tolist(),
        "ece": ece,
    }


def classification(is_fake: np.ndarray, predicted_fake: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, per-class precision/recall/F1, confusion matrix (rows: true
    FAKE, REAL; columns: predicted FAKE, REAL)."""
    matrix = np.array(
        [
            [np.sum(is_fake & predicted_fake), np.sum(is_fake & ~predicted_fake)],
            [np.sum(~is_fake & predicted_fake), np.sum(~is_fake & ~predicted_fake)],
        ]
    )
    per_class = {}
    for index, name in enumerate(("FAKE", "REAL")):
        true_positive = matrix[index, index]
        predicted, actual = matrix[:, index].sum(), matrix[index, :].sum()
        precision = true_positive / predicted if predicted else 0.0
        recall = true_positive / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {
            "precision": float(precision),
            "recall": float(recall),
            "f1": float(f1),
            "support": int(actual),
        }
    recalls = [per_class[name]["recall"] for name in ("FAKE", "REAL") if per_class[name]["support"]]
    return {
        "accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def choose_threshold(
    is_fake: np.ndarray, p_fake: np.ndarray, mode: str = "balanced_accuracy", target_fpr: float = 0.05
) -> float:
    """The P(FAKE) threshold (FAKE when ≥ it) that maximises balanced accuracy on the set, or the
    lowest one whose false-positive rate (REAL called FAKE) is at most ``target_fpr``. Midpoints
    between neighbouring scores, so a threshold never sits exactly on a video's score."""
    scores = np.unique(p_fake)
    candidates = np.r_[scores[0] / 2, (scores[:-1] + scores[1:]) / 2, (scores[-1] + 1) / 2]
    best, best_value = 0.5, -1.0
    for threshold in candidates:
        predicted = p_fake >= threshold
        if mode == "fpr":
            real = ~is_fake
            fpr = np.sum(predicted & real) / max(real.sum(), 1)
            if fpr <= target_fpr:
                return float(threshold)
            continue
        value = classification(is_fake, predicted)["balanced_accuracy"]
        if value > best_value + 1e-12:
            best, best_value = float(threshold), value
    return best if mode != "fpr" else float(candidates[-1])
