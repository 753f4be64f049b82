"""The numbers a checkpoint is judged by, per verdict rule, computed here from the rows alone.

FAKE is the positive class (P(FAKE) is the score). The standard metrics are scikit-learn's
(``roc_curve``, ``auc``, ``confusion_matrix``, ``precision_recall_fscore_support``, accuracy,
balanced accuracy, ``calibration_curve``); two are ours, derived from them: the expected
calibration error (over ``calibration_curve``'s own bins) and the threshold choice (over
``roc_curve``'s points, O(n log n): one sort).

With one class only (every row FAKE, or every row REAL) nothing here raises: the rate of the
missing class is undefined, so the ROC's ``tpr`` (no FAKE) or ``fpr`` (no REAL) is NaN as
scikit-learn gives it and ``auc`` is NaN (scikit-learn's ``roc_auc_score`` refuses); balanced
accuracy is the recall of the class present (scikit-learn's definition); the calibration is
defined as usual. ``summary.py`` asks for the ROC, AUC, calibration and threshold only when both
classes are present.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_curve,
)
from sklearn.metrics import auc as area_under

CALIBRATION_BINS = 10
LABELS = [True, False]  # FAKE, REAL: the order of the confusion matrix's rows and columns
TIE = 1e-12  # balanced accuracies closer than this are equal (they are sums of different fractions)


@dataclass(frozen=True)
class Curve:
    fpr: list[float]
    tpr: list[float]
    thresholds: list[float]


def roc(is_fake: np.ndarray, p_fake: np.ndarray) -> Curve:
    """scikit-learn's ``roc_curve`` with every point kept (``drop_intermediate=False``): one per
    distinct score, highest first, after (0, 0) at threshold +inf; point i calls FAKE what scores
    ≥ ``thresholds[i]``. No rows: the (0, 0) point alone."""
    if len(p_fake) == 0:
        return Curve([0.0], [0.0], [float("inf")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # one class: NaN rates (module docstring)
        fpr, tpr, thresholds = roc_curve(np.asarray(is_fake, dtype=bool), p_fake, drop_intermediate=False)
    return Curve(fpr.tolist(), tpr.tolist(), thresholds.tolist())


def auc(curve: Curve) -> float:
    """The area under the ROC (trapezoids); NaN where a rate is undefined (one class only)."""
    if len(curve.fpr) < 2 or np.isnan(curve.fpr).any() or np.isnan(curve.tpr).any():
        return float("nan")
    return float(area_under(curve.fpr, curve.tpr))


def calibration_bin(p_fake: np.ndarray, bins: int = CALIBRATION_BINS) -> np.ndarray:
    """The bin of each score in ``calibration_curve(..., strategy="uniform")``, by its own rule
    (scikit-learn 1.5 to 1.9: ``np.searchsorted(edges[1:-1], p)``, side left): bin 0 is [0, 1/bins],
    bin k > 0 is (k/bins, (k+1)/bins]; a score exactly on an inner edge belongs to the bin below."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], p_fake)


def calibration(is_fake: np.ndarray, p_fake: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Reliability diagram over P(FAKE) in equal-width bins (empty bins left out), scikit-learn's
    ``calibration_curve``, and the expected calibration error: the count-weighted mean
    |mean P(FAKE) - fraction FAKE| over the same bins. No rows: no bins and an ECE of 0."""
    if len(p_fake) == 0:
        return {"mean_predicted": [], "fraction_fake": [], "counts": [], "ece": 0.0}
    fraction_fake, mean_predicted = calibration_curve(
        np.asarray(is_fake, dtype=bool), p_fake, n_bins=bins, strategy="uniform"
    )
    counts = np.bincount(calibration_bin(p_fake, bins), minlength=bins)
    counts = counts[counts > 0]
    if len(counts) != len(mean_predicted):  # a scikit-learn whose bins moved: say so, never misweigh
        raise RuntimeError("calibration_curve's bins are not calibration_bin's: update calibration_bin")
    ece = float(np.sum(counts * np.abs(mean_predicted - fraction_fake)) / len(p_fake))
    return {
        "mean_predicted": mean_predicted.tolist(),
        "fraction_fake": fraction_fake.tolist(),
        "counts": counts.tolist(),
        "ece": ece,
    }


def classification(is_fake: np.ndarray, predicted_fake: np.ndarray) -> dict:
    """Accuracy, balanced accuracy, per-class precision/recall/F1 (0 where undefined), confusion
    matrix (rows: true FAKE, REAL; columns: predicted FAKE, REAL). No rows: all zero."""
    is_fake, predicted_fake = np.asarray(is_fake, dtype=bool), np.asarray(predicted_fake, dtype=bool)
    if len(is_fake) == 0:  # scikit-learn refuses empty input; every video an error row gets here
        zero = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
        return {
            "accuracy": 0.0,
            "balanced_accuracy": 0.0,
            "per_class": {"FAKE": dict(zero), "REAL": dict(zero)},
            "confusion_matrix": [[0, 0], [0, 0]],
        }
    matrix = confusion_matrix(is_fake, predicted_fake, labels=LABELS)
    precision, recall, f1, support = precision_recall_fscore_support(
        is_fake, predicted_fake, labels=LABELS, zero_division=0.0
    )
    per_class = {
        name: {
            "precision": float(precision[index]),
            "recall": float(recall[index]),
            "f1": float(f1[index]),
            "support": int(support[index]),
        }
        for index, name in enumerate(("FAKE", "REAL"))
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # one class: the recall of the class present
        balanced = float(balanced_accuracy_score(is_fake, predicted_fake))
    return {
        "accuracy": float(accuracy_score(is_fake, predicted_fake)),
        "balanced_accuracy": balanced,
        "per_class": per_class,
        "confusion_matrix": matrix.tolist(),
    }


def choose_threshold(
    is_fake: np.ndarray, p_fake: np.ndarray, mode: str = "balanced_accuracy", target_fpr: float = 0.05
) -> float:
    """The P(FAKE) threshold (FAKE when ≥ it) chosen among ``roc_curve``'s points:

    - ``balanced_accuracy``: the point of highest balanced accuracy, (tpr + 1 - fpr) / 2 (with one
      class, the recall of that class); of equal ones, the lowest threshold (the old choice);
    - ``fpr``: of the points whose false-positive rate (REAL called FAKE) is at most ``target_fpr``,
      the one that finds the most FAKE, and of those the one with the fewest false positives (the
      highest threshold: a lower one would only call more REAL videos FAKE).

    The value returned is not the point's score itself but midway between it and the next lower
    score (half the lowest score for "everything FAKE", between the highest score and 1 for
    "nothing FAKE"), so it classifies every row as the point does with room on both sides: a
    threshold written with 6 decimals into the model's config does not flip a video sitting on
    it. Where two scores are too close for a midway value, the point's own score; where the highest
    score is 1, "nothing FAKE" is the float just above 1."""
    if mode not in ("balanced_accuracy", "fpr"):
        raise ValueError(f"unknown threshold mode {mode!r}: balanced_accuracy or fpr")
    if len(p_fake) == 0:
        raise ValueError("no scores to choose a threshold from")
    curve = roc(is_fake, p_fake)
    fpr, tpr = np.array(curve.fpr), np.array(curve.tpr)
    if mode == "balanced_accuracy":
        balanced = np.nanmean(np.stack([tpr, 1 - fpr]), axis=0)  # a NaN rate (one class) drops out
        point = int(np.flatnonzero(balanced >= balanced.max() - TIE)[-1])
    else:
        fpr, tpr = np.nan_to_num(fpr), np.nan_to_num(tpr)  # no REAL: none called FAKE; no FAKE: none found
        qualifying = fpr <= target_fpr
        if not qualifying.any():  # only a negative target: the (0, 0) point, nothing FAKE, is closest
            return _between(curve.thresholds, 0)
        point = int(np.flatnonzero(qualifying & (tpr == tpr[qualifying].max()))[0])  # rates rise with i
    return _between(curve.thresholds, point)


def _between(thresholds: list[float], point: int) -> float:
    """A threshold classifying as ``roc`` point ``point`` does: above the next lower score, at most
    the point's own (``thresholds`` are inf, then the distinct scores in decreasing order)."""
    if point == 0:  # nothing FAKE: above the highest score
        highest = thresholds[1]
        midway = (highest + 1) / 2
        return float(midway if midway > highest else np.nextafter(highest, np.inf))
    score = thresholds[point]
    lower = thresholds[point + 1] if point + 1 < len(thresholds) else min(0.0, score)
    midway = lower + (score - lower) / 2
    return float(midway if lower < midway <= score else score)
