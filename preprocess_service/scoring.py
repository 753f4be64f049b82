"""Per-frame scores and the two verdict rules, both computed on every request.

``sequence`` (the default): the temporal model over the video's whole face sequence — what the
model was built for. ``original``: the rule of the original service's ``/predict/`` — the 4 display
frames (sample positions 0, 10, 20, 29 of 30), each scored alone as a one-frame sequence, the most
common label among them (ties: the first seen), confidence the mean of their winning-class
probabilities. The per-frame scores exist anyway, so the second rule costs nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from model_contract import LABELS
from model_contract.identity import DEFAULT_THRESHOLD, Rule

ORIGINAL_FRAMES = 4  # the original showed, and voted with, 4 frames


def label_of(p_fake: float, threshold: float = DEFAULT_THRESHOLD) -> str:
    """At 0.5: argmax of [p_fake, p_real], index 0 winning a tie, as the original. Another threshold
    comes from an evaluation (``deepfake-eval --write-threshold``), recorded with the model."""
    return LABELS[0] if p_fake >= threshold else LABELS[1]


def confidence_of(p_fake: float, label: str | None = None) -> float:
    """The seed's convention: the winning class's probability x 100 (with a threshold other than
    0.5, the probability of the label given, which may then be below 50)."""
    label = label or label_of(p_fake)
    return round(100 * (p_fake if label == LABELS[0] else 1 - p_fake), 2)


@dataclass(frozen=True)
class FrameScore:
    frame_index: int
    frame_time_sec: float
    p_fake: float | None  # None: no face in this frame (face profiles)

    @property
    def label(self) -> str:
        return "NO_FACE" if self.p_fake is None else label_of(self.p_fake)

    @property
    def confidence(self) -> float | None:
        return None if self.p_fake is None else confidence_of(self.p_fake)


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    label: str
    confidence: float
    p_fake: float
    frame_indices: list[int]  # the frames the rule looked at
    threshold: float = DEFAULT_THRESHOLD  # P(FAKE) at or above which the label is FAKE


def spread_positions(count_of_samples: int, count: int = ORIGINAL_FRAMES) -> list[int]:
    """Positions 0, 10, 20, 29 of 30 for 4 (the original's display frames): first, evenly, last."""
    if count <= 1 or count_of_samples <= 1:
        return [0] if count_of_samples and count else []
    return sorted({min(int(count_of_samples * i / (count - 1)), count_of_samples - 1) for i in range(count)})


def sequence_verdict(p_fake: float, frames: list[FrameScore], threshold: float = DEFAULT_THRESHOLD) -> Verdict:
    scored = sorted({frame.frame_index for frame in frames if frame.p_fake is not None})
    label = label_of(p_fake, threshold)
    return Verdict("sequence", label, confidence_of(p_fake, label), p_fake, scored, threshold)


def original_verdict(frames: list[FrameScore], threshold: float = DEFAULT_THRESHOLD) -> Verdict:
    """The original's 4 positions; those without a face are left out (the original scored a centre
    crop there instead). If none of the 4 has a face, 4 evenly spaced frames that have one vote.
    With a threshold recorded by an evaluation (not 0.5), the mean P(FAKE) of those frames, the score
    the threshold was chosen on, is compared with it instead of the vote."""
    chosen = [frames[i] for i in spread_positions(len(frames)) if frames[i].p_fake is not None]
    if not chosen:
        with_face = [frame for frame in frames if frame.p_fake is not None]
        chosen = [with_face[i] for i in spread_positions(len(with_face))]
    scores = [frame.p_fake for frame in chosen if frame.p_fake is not None]
    mean = sum(scores) / len(scores)
    indices = [frame.frame_index for frame in chosen]
    if threshold != DEFAULT_THRESHOLD:
        label = label_of(mean, threshold)
        return Verdict("original", label, confidence_of(mean, label), mean, indices, threshold)
    label = Counter(label_of(p) for p in scores).most_common(1)[0][0]  # ties: the first seen
    confidence = round(sum(100 * max(p, 1 - p) for p in scores) / len(scores), 2)
    return Verdict("original", label, confidence, mean, indices)
