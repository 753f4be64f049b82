"""preprocess_service.scoring: the per-frame labels and the two verdict rules.

These are the numbers every answer, receipt and history row carries, so the tie rules (0.5 is FAKE,
a tied vote goes to the first label seen), the display positions (0, 10, 20, 29 of 30) and the
fallbacks when frames have no face are pinned here, without any model.
"""

from __future__ import annotations

import pytest

from model_contract import LABELS
from preprocess_service.scoring import (
    FrameScore,
    Verdict,
    confidence_of,
    label_of,
    original_verdict,
    sequence_verdict,
    spread_positions,
)

FAKE, REAL = LABELS


def frames_of(p_fakes: list[float | None], index_step: int = 3) -> list[FrameScore]:
    """Frames whose frame_index differs from their position, so the two cannot be confused."""
    return [FrameScore(i * index_step, i * 0.5, p) for i, p in enumerate(p_fakes)]


def thirty_with_display(display: dict[int, float | None], others: float | None = 0.5) -> list[FrameScore]:
    """30 sampled frames; positions 0, 10, 20, 29 (the display frames) get the given scores."""
    return frames_of([display.get(position, others) for position in range(30)])


# --- label_of / confidence_of -------------------------------------------------------------------


def test_labels_are_fake_then_real() -> None:
    assert LABELS == ("FAKE", "REAL")


def test_label_of_a_tie_at_one_half_is_fake() -> None:
    assert label_of(0.5) == FAKE


def test_label_of_just_below_one_half_is_real() -> None:
    assert label_of(0.4999999) == REAL
    assert label_of(0.0) == REAL
    assert label_of(1.0) == FAKE


def test_label_of_uses_the_threshold_given() -> None:
    assert label_of(0.4, threshold=0.3) == FAKE
    assert label_of(0.6, threshold=0.7) == REAL
    assert label_of(0.7, threshold=0.7) == FAKE  # at the threshold: FAKE, as at 0.5


def test_confidence_of_is_the_winning_probability_in_percent_rounded_to_two_places() -> None:
    assert confidence_of(0.9) == 90.0
    assert confidence_of(0.123456) == 87.65  # REAL wins: 100 * (1 - 0.123456) = 87.6544
    assert confidence_of(0.987654) == 98.77


def test_confidence_of_with_a_label_given_is_that_labels_probability_even_below_fifty() -> None:
    # with a threshold of 0.3 a p_fake of 0.4 is FAKE, at 40 % confidence
    assert confidence_of(0.4, label_of(0.4, 0.3)) == 40.0
    assert confidence_of(0.6, REAL) == 40.0


# --- FrameScore ----------------------------------------------------------------------------------


def test_a_frame_without_a_face_is_no_face_without_a_confidence() -> None:
    frame = FrameScore(frame_index=7, frame_time_sec=0.28, p_fake=None)
    assert frame.label == "NO_FACE"
    assert frame.confidence is None


def test_a_frame_scored_zero_is_real_not_no_face() -> None:
    frame = FrameScore(frame_index=0, frame_time_sec=0.0, p_fake=0.0)
    assert frame.label == REAL
    assert frame.confidence == 100.0


def test_a_frame_label_and_confidence_follow_its_score() -> None:
    frame = FrameScore(frame_index=3, frame_time_sec=0.1, p_fake=0.75)
    assert (frame.label, frame.confidence) == (FAKE, 75.0)


# --- spread_positions ----------------------------------------------------------------------------


def test_spread_positions_of_thirty_are_the_originals_display_frames() -> None:
    assert spread_positions(30) == [0, 10, 20, 29]
    assert spread_positions(30, 4) == [0, 10, 20, 29]


@pytest.mark.parametrize(
    ("samples", "count", "expected"),
    [
        (0, 4, []),
        (1, 4, [0]),
        (2, 4, [0, 1]),
        (3, 4, [0, 1, 2]),
        (5, 1, [0]),
        (5, 0, []),
        (0, 1, []),
        (8, 4, [0, 2, 5, 7]),
        (100, 2, [0, 99]),
    ],
)
def test_spread_positions_edge_cases(samples: int, count: int, expected: list[int]) -> None:
    assert spread_positions(samples, count) == expected


@pytest.mark.parametrize("samples", range(1, 40))
def test_spread_positions_are_sorted_distinct_in_range_and_start_and_end_at_the_ends(samples: int) -> None:
    positions = spread_positions(samples, 4)
    assert positions == sorted(set(positions))
    assert positions[0] == 0
    assert positions[-1] == samples - 1
    assert len(positions) == min(samples, 4)


# --- sequence_verdict ----------------------------------------------------------------------------


def test_sequence_verdict_lists_only_frames_with_a_face() -> None:
    frames = frames_of([0.2, None, 0.9, None, 0.4])
    verdict = sequence_verdict(0.8, frames)
    assert verdict.frame_indices == [0, 6, 12]
    assert (verdict.rule, verdict.label, verdict.confidence, verdict.p_fake) == ("sequence", FAKE, 80.0, 0.8)
    assert verdict.threshold == 0.5


def test_sequence_verdict_ignores_the_frames_scores_and_uses_the_sequence_score() -> None:
    frames = frames_of([0.99, 0.99, 0.99])
    verdict = sequence_verdict(0.1, frames)
    assert (verdict.label, verdict.confidence) == (REAL, 90.0)


def test_sequence_verdict_with_a_threshold_labels_and_records_it() -> None:
    verdict = sequence_verdict(0.4, frames_of([0.4]), threshold=0.3)
    assert verdict == Verdict("sequence", FAKE, 40.0, 0.4, [0], 0.3)


# --- original_verdict ----------------------------------------------------------------------------


def test_original_verdict_votes_with_the_four_display_frames_only() -> None:
    # the 26 other frames are all FAKE; the display frames are 3 REAL to 1 FAKE
    frames = thirty_with_display({0: 0.1, 10: 0.2, 20: 0.3, 29: 0.9}, others=0.99)
    verdict = original_verdict(frames)
    assert verdict.rule == "original"
    assert verdict.label == REAL
    assert verdict.frame_indices == [0, 30, 60, 87]  # frame indices of positions 0, 10, 20, 29
    assert verdict.p_fake == pytest.approx((0.1 + 0.2 + 0.3 + 0.9) / 4)
    assert verdict.confidence == round((90 + 80 + 70 + 90) / 4, 2)  # each frame's winning class
    assert verdict.threshold == 0.5


def test_original_verdict_tie_goes_to_the_first_label_seen_fake_first() -> None:
    verdict = original_verdict(thirty_with_display({0: 0.9, 10: 0.8, 20: 0.2, 29: 0.1}))
    assert verdict.label == FAKE
    assert verdict.confidence == 85.0


def test_original_verdict_tie_goes_to_the_first_label_seen_real_first() -> None:
    verdict = original_verdict(thirty_with_display({0: 0.1, 10: 0.2, 20: 0.8, 29: 0.9}))
    assert verdict.label == REAL


def test_original_verdict_leaves_out_display_frames_without_a_face() -> None:
    frames = thirty_with_display({0: 0.9, 10: None, 20: 0.2, 29: 0.3})
    verdict = original_verdict(frames)
    assert verdict.frame_indices == [0, 60, 87]
    assert verdict.label == REAL  # 2 REAL to 1 FAKE; the missing frame is not scored as anything
    assert verdict.p_fake == pytest.approx((0.9 + 0.2 + 0.3) / 3)


def test_original_verdict_without_a_face_in_any_display_frame_votes_with_frames_that_have_one() -> None:
    scores: list[float | None] = [None] * 30
    for position, p in zip(range(1, 9), [0.9, 0.1, 0.9, 0.1, 0.1, 0.9, 0.1, 0.9], strict=True):
        scores[position] = p  # 8 frames with a face, none of them a display position
    verdict = original_verdict(frames_of(scores))
    # spread_positions(8) = [0, 2, 5, 7] of the frames with a face → positions 1, 3, 6, 8
    assert verdict.frame_indices == [3, 9, 18, 24]
    assert verdict.p_fake == pytest.approx((0.9 + 0.9 + 0.9 + 0.9) / 4)
    assert verdict.label == FAKE


def test_original_verdict_with_fewer_than_four_faces_uses_all_of_them() -> None:
    scores: list[float | None] = [None] * 30
    scores[5], scores[6] = 0.2, 0.4
    verdict = original_verdict(frames_of(scores))
    assert verdict.frame_indices == [15, 18]
    assert verdict.label == REAL


def test_original_verdict_with_a_recorded_threshold_compares_the_mean_not_the_vote() -> None:
    # the vote would be FAKE (3 of 4 at 0.7), but the mean, 0.5375, is below the threshold 0.55
    frames = thirty_with_display({0: 0.7, 10: 0.7, 20: 0.7, 29: 0.05})
    verdict = original_verdict(frames, threshold=0.55)
    assert verdict.label == REAL
    assert verdict.p_fake == pytest.approx(0.5375)
    assert verdict.confidence == confidence_of(0.5375, REAL) == 46.25
    assert verdict.threshold == 0.55


def test_original_verdict_with_a_low_threshold_can_be_fake_below_one_half() -> None:
    frames = thirty_with_display({0: 0.4, 10: 0.4, 20: 0.4, 29: 0.4})
    assert original_verdict(frames).label == REAL
    verdict = original_verdict(frames, threshold=0.3)
    assert (verdict.label, verdict.confidence) == (FAKE, 40.0)
