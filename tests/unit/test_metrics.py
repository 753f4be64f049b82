"""evaluation.metrics against scikit-learn, property-tested (Hypothesis) where the two could part:
scores exactly on the calibration bins' edges, one class only, ties, a single row; and the
threshold choice against a brute force over every cut of the scores."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve

from evaluation.metrics import (
    CALIBRATION_BINS,
    auc,
    calibration,
    calibration_bin,
    choose_threshold,
    classification,
    roc,
)

EDGES = np.linspace(0.0, 1.0, CALIBRATION_BINS + 1)  # the bin edges as calibration_curve computes them
TENTHS = [i / 10 for i in range(11)]  # as written: 0.3 is not EDGES[3] (0.30000000000000004)
SCORE = st.one_of(st.sampled_from(EDGES.tolist()), st.sampled_from(TENTHS), st.floats(0.0, 1.0))
ROWS = st.lists(st.tuples(st.booleans(), SCORE), min_size=1, max_size=24)
ALL_FAKE_ON_EDGES = [(True, edge) for edge in EDGES.tolist()]
ALL_REAL_TIED = [(False, 0.5)] * 3
SINGLE = [(True, 0.1)]


def arrays(rows: list[tuple[bool, float]]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([r[0] for r in rows], dtype=bool), np.array([r[1] for r in rows], dtype=float)


def sk_balanced(is_fake: np.ndarray, predicted: np.ndarray) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one class: scikit-learn warns, and averages the class present
        return float(sk.balanced_accuracy_score(is_fake, predicted))


def cuts(p_fake: np.ndarray) -> list[float]:
    """Every distinct classification ``p >= t`` can make: t at each score, and above them all."""
    return [*np.unique(p_fake).tolist(), float("inf")]


def rates(is_fake: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(false-positive rate, true-positive rate), 0 for a class that is absent."""
    fp, tp = np.sum(predicted & ~is_fake), np.sum(predicted & is_fake)
    return fp / max(np.sum(~is_fake), 1), tp / max(np.sum(is_fake), 1)


@settings(deadline=None)
@given(ROWS)
@example(ALL_FAKE_ON_EDGES)
@example(ALL_REAL_TIED)
@example(SINGLE)
def test_the_roc_and_its_area_are_scikit_learns_and_one_class_gives_nan_not_an_error(rows):
    is_fake, p_fake = arrays(rows)
    curve = roc(is_fake, p_fake)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fpr, tpr, thresholds = sk.roc_curve(is_fake, p_fake, drop_intermediate=False)
    np.testing.assert_array_equal(curve.fpr, fpr)  # NaN where scikit-learn has NaN (one class)
    np.testing.assert_array_equal(curve.tpr, tpr)
    assert curve.thresholds == thresholds.tolist() and len(curve.thresholds) == len(np.unique(p_fake)) + 1
    if 0 < is_fake.sum() < len(is_fake):
        assert auc(curve) == pytest.approx(sk.roc_auc_score(is_fake, p_fake))
    else:
        assert np.isnan(auc(curve))  # undefined; roc_auc_score raises


def brute_force_bin(score: float) -> int:
    """calibration_curve's rule as written out: bin 0 is [0, e1], bin k is (e_k, e_k+1]."""
    return next(k for k in range(CALIBRATION_BINS) if score <= EDGES[k + 1])


@settings(deadline=None)
@given(ROWS)
@example(ALL_FAKE_ON_EDGES)
@example(ALL_REAL_TIED)
@example(SINGLE)
def test_calibration_and_its_ece_use_calibration_curves_own_bins(rows):
    is_fake, p_fake = arrays(rows)
    mine = calibration(is_fake, p_fake)
    fraction, mean_predicted = calibration_curve(is_fake, p_fake, n_bins=CALIBRATION_BINS, strategy="uniform")
    assert mine["fraction_fake"] == pytest.approx(fraction.tolist())
    assert mine["mean_predicted"] == pytest.approx(mean_predicted.tolist())
    bins = [brute_force_bin(score) for score in p_fake]
    used = sorted(set(bins))
    # scikit-learn's bins are the rule written out (a scikit-learn that moved them fails here)...
    assert mean_predicted.tolist() == pytest.approx([np.mean(p_fake[np.array(bins) == k]) for k in used])
    # ...and ours are the same bins, so the ECE weighs each of its points by the right count
    assert calibration_bin(p_fake).tolist() == bins
    counts = [bins.count(k) for k in used]
    assert mine["counts"] == counts and sum(counts) == len(p_fake)
    ece = sum(c * abs(m - f) for c, m, f in zip(counts, mean_predicted, fraction, strict=True)) / len(p_fake)
    assert mine["ece"] == pytest.approx(ece)


def test_scores_exactly_on_every_edge_fall_in_the_bin_below_as_in_scikit_learn():
    p_fake = EDGES.copy()
    mine = calibration(np.ones(len(p_fake), dtype=bool), p_fake)
    assert mine["counts"] == [2, 1, 1, 1, 1, 1, 1, 1, 1, 1]  # 0 and 0.1 share [0, 0.1]; 1.0 is in (0.9, 1]
    assert mine["mean_predicted"] == pytest.approx([0.05, *EDGES[2:].tolist()])


@settings(deadline=None)
@given(ROWS, st.one_of(st.sampled_from(TENTHS), st.floats(0.0, 1.0)))
@example(ALL_FAKE_ON_EDGES, 0.5)
@example(ALL_REAL_TIED, 0.5)
@example(SINGLE, 0.1)
def test_classification_is_scikit_learns(rows, cut):
    is_fake, p_fake = arrays(rows)
    predicted = p_fake >= cut
    mine = classification(is_fake, predicted)
    assert mine["accuracy"] == pytest.approx(sk.accuracy_score(is_fake, predicted))
    assert mine["balanced_accuracy"] == pytest.approx(sk_balanced(is_fake, predicted))
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        is_fake, predicted, labels=[True, False], zero_division=0
    )
    for index, name in enumerate(("FAKE", "REAL")):
        assert mine["per_class"][name] == pytest.approx(
            {"precision": precision[index], "recall": recall[index], "f1": f1[index], "support": support[index]}
        )
    assert mine["confusion_matrix"] == sk.confusion_matrix(is_fake, predicted, labels=[True, False]).tolist()


@settings(deadline=None)
@given(ROWS)
@example(ALL_FAKE_ON_EDGES)
@example(ALL_REAL_TIED)
@example(SINGLE)
@example([(True, 0.0), (False, 1.0)])  # "nothing FAKE" above a score of 1
@example([(True, 5e-324)])  # no float between the lowest score and 0
def test_the_chosen_threshold_maximises_balanced_accuracy_over_every_cut(rows):
    is_fake, p_fake = arrays(rows)
    chosen = choose_threshold(is_fake, p_fake)
    best = max(sk_balanced(is_fake, p_fake >= cut) for cut in cuts(p_fake))
    assert sk_balanced(is_fake, p_fake >= chosen) == pytest.approx(best)
    # midway between scores, never on one, where there is room (a subnormal score such as 5e-324 has
    # no float between it and 0: then the score itself, as documented; Hypothesis found that case)
    if p_fake.min() > 1e-9 and np.diff(np.unique(p_fake)).min(initial=1) > 1e-9:
        assert chosen not in p_fake


@settings(deadline=None)
@given(ROWS, st.one_of(st.sampled_from([0.0, 0.1, 0.25, 1 / 3, 0.5, 1.0]), st.floats(0.0, 1.0)))
@example(ALL_FAKE_ON_EDGES, 0.0)
@example(ALL_REAL_TIED, 0.0)
@example(SINGLE, 0.05)
@example([(False, 0.2), (True, 0.6), (False, 0.6), (True, 0.9)], 0.5)
def test_the_fpr_threshold_respects_the_target_and_finds_the_most_fakes_with_the_fewest_false_positives(rows, target):
    is_fake, p_fake = arrays(rows)
    chosen = choose_threshold(is_fake, p_fake, "fpr", target)
    fpr, tpr = rates(is_fake, p_fake >= chosen)
    assert fpr <= target
    qualifying = [rates(is_fake, p_fake >= cut) for cut in cuts(p_fake)]
    qualifying = [(f, t) for f, t in qualifying if f <= target]
    assert tpr == max(t for _, t in qualifying)
    assert fpr == min(f for f, t in qualifying if t == tpr)


def test_a_single_row_and_one_class_never_raise():
    one_fake, one_real = np.array([True]), np.array([False])
    curve = roc(one_fake, np.array([0.7]))
    assert curve.tpr == [0.0, 1.0] and np.isnan(curve.fpr).all()  # no REAL: the false-positive rate is undefined
    assert np.isnan(auc(roc(one_real, np.array([0.7]))))
    assert calibration(one_real, np.array([0.7]))["counts"] == [1]
    assert classification(one_fake, np.array([True]))["balanced_accuracy"] == 1.0  # the recall of FAKE alone
    assert choose_threshold(one_fake, np.array([0.7])) <= 0.7  # everything FAKE: all FAKE found
    assert choose_threshold(one_real, np.array([0.7])) > 0.7  # nothing FAKE: no REAL called FAKE
    nothing = classification(np.array([], dtype=bool), np.array([], dtype=bool))  # every row an error
    assert nothing["accuracy"] == 0.0 and nothing["confusion_matrix"] == [[0, 0], [0, 0]]
    with pytest.raises(ValueError):
        choose_threshold(np.array([], dtype=bool), np.array([]))


def test_the_threshold_choice_is_one_sort_not_a_loop_over_thresholds():
    """The old loop classified every row at every candidate (O(n²): minutes here); now one roc_curve."""
    generator = np.random.default_rng(0)
    is_fake = generator.random(200_000) < 0.5
    p_fake = np.clip(generator.normal(0.35 + 0.3 * is_fake, 0.2), 0, 1)
    started = time.perf_counter()
    choose_threshold(is_fake, p_fake)
    choose_threshold(is_fake, p_fake, "fpr", 0.05)
    assert time.perf_counter() - started < 10
