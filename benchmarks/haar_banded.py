"""An experiment kept out of the service: the Haar fallback's exact banded search.

The issue asked for the full-frame Haar fallback (40-140 ms a frame) to search only the window sizes
that can still beat the largest box found so far, giving the same boxes. This is that search;
benchmarks/front.py times it against the full search on every sampled frame of the seed videos and
stops on any box that differs. It is 2.9-3.5x faster where the face is large, but the service runs Haar
only where MediaPipe found nothing, and on those frames (small faces, or none) the search must go down
to the smallest windows anyway: there it was no faster (docs/benchmarks.md, "Less work before the
model"), so preprocess_service/faces.py keeps the plain search.

``largest`` searches window sides in bands from the largest down and stops once the windows found
so far decide the answer. It gives exactly the box (or None) of ``largest_full``, the original's
``detectMultiScale(gray, 1.1, 5)`` and the largest of its boxes, because:

- a scale's windows do not depend on the other scales of the call (each scale's image is
  resized from the frame alone), except for the last row of scales stepped by 2, which the
  bands keep as the full search has it (``_haar_bands``): the bands together find exactly the
  full search's windows, and grouping them as detectMultiScale does inside
  (``cv2.groupRectangles``, eps 0.2, more than 5 neighbours) gives exactly its boxes;
- OpenCV groups two windows only when each edge of one lies within 0.2 x (the smaller width +
  the smaller height) / 2 of the other's, so a window no wider or taller than a side s joins
  no window wider or taller than 1.4 s (windows cut at the frame's edge are only narrower).
  A class with no window within that reach of the largest side not yet searched is final:
  its windows, box and neighbour count are already those of the full search;
- a class that unseen windows may still join or form averages to a box no wider (taller) than
  the larger of that side and its own current mean width (height);
- the box is returned only when a final class is strictly larger than every other final class
  and than that bound, and cannot be dropped: OpenCV drops a box only inside another (widened
  by 20% a side) with more neighbours; the classes not final are too small to hold it, and the
  final ones are checked with a wider margin than OpenCV's.

Otherwise the next band is searched; after the last, the grouped boxes of every window decide,
and a tie for the largest is left to the full search (its own order picks, as before).
When it was tried inside faces.py (commit f47e36e, branch haar-banded-search), a test compared both
on 372 frames (every sampled frame of the seed videos and of the test suite's videos, at full
resolution and at 320 px) and caught a naive pruning; benchmarks/front.py compares them on every
sampled seed frame each time it runs.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]


def _largest(boxes: list[Box]) -> Box | None:
    return max(boxes, key=lambda box: box[2] * box[3]) if boxes else None


# detectMultiScale's settings, as the original called it; HAAR_GROUP_EPS is the one OpenCV fixes inside it
HAAR_SCALE_FACTOR, HAAR_MIN_NEIGHBORS, HAAR_GROUP_EPS = 1.1, 5, 0.2
HAAR_BAND_RATIO = 1.25  # each band of window sides searched spans at most this ratio, largest band first
# Sides up to this (factors below 2.2) are searched in one last band, with the 24-px windows: see _haar_bands
HAAR_BOTTOM_SIDE = 52


def _haar_window_sides(cascade: cv2.CascadeClassifier, shape: tuple[int, ...]) -> list[int] | None:
    """The window sides ``detectMultiScale`` tries on a grey image of this shape, smallest first,
    computed as OpenCV computes them: the factor multiplied up in double precision until the window
    leaves the image, stored as float32, and the side rounded (half to even) from the float product.
    None for a cascade whose windows are not squares growing by at least a pixel a step (not
    ``haarcascade_frontalface_default``'s 24x24): those are searched whole."""
    window_width, window_height = cascade.getOriginalWindowSize()
    height, width = shape[:2]
    sides: list[int] = []
    factor = 1.0
    while round(window_width * factor) <= width and round(window_height * factor) <= height:
        sides.append(int(np.rint(np.float32(window_width) * np.float32(factor))))
        factor *= HAAR_SCALE_FACTOR
    if window_width != window_height or any(b <= a for a, b in zip(sides, sides[1:], strict=False)):
        return None
    return sides


def _haar_bands(sides: list[int]) -> list[tuple[int, int]]:
    """(min side, max side) of each band, largest first. Every side lies in exactly one band, and each
    band holds at least one real side (an empty one would make OpenCV search its nearest scale).

    The sides up to HAAR_BOTTOM_SIDE form the last band, whose smallest is the cascade's own window, as
    in the full search. OpenCV cuts each scale's rows into stripes whose count comes from the smallest
    scale of the call, and where it steps rows by 2 (factors below 2) on an odd number of rows, whether
    the last row is searched depends on that count: searched in a call of their own, those scales could
    find windows the full search does not, or miss some it finds. Scales stepped by 1 search every row
    whatever the count, so the bands above may start anywhere."""
    bottom = sum(1 for side in sides if side <= HAAR_BOTTOM_SIDE)
    bands, top = [], len(sides) - 1
    while top >= bottom:
        low = top
        while low > bottom and sides[low - 1] * HAAR_BAND_RATIO >= sides[top]:
            low -= 1
        bands.append((sides[low - 1] + 1 if low else 1, sides[top]))
        top = low - 1
    if bottom:
        bands.append((1, sides[bottom - 1]))
    return bands


def _haar_raw(cascade: cv2.CascadeClassifier, gray: np.ndarray, low: int, high: int) -> list[Box]:
    """Every window the cascade accepts with a side in [low, high], ungrouped (minNeighbors 0: OpenCV
    skips its grouping). A scale's windows do not depend on the other scales searched in the same call:
    each scale's image is resized from the frame on its own, and every row and column of it is tried."""
    found = cascade.detectMultiScale(
        gray, scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=0, minSize=(low, low), maxSize=(high, high)
    )
    return [(int(x), int(y), int(w), int(h)) for x, y, w, h in found]


def _haar_groups(rects: np.ndarray) -> list[np.ndarray]:
    """The classes ``cv::groupRectangles`` puts the rectangles in (indices of each): the connected parts
    of OpenCV's ``SimilarRects`` relation, in the same double-precision arithmetic."""
    x, y, w, h = (rects[:, i] for i in range(4))
    delta = HAAR_GROUP_EPS * (np.minimum.outer(w, w) + np.minimum.outer(h, h)) * 0.5
    similar = (
        (np.abs(x[:, None] - x[None, :]) <= delta)
        & (np.abs(y[:, None] - y[None, :]) <= delta)
        & (np.abs((x + w)[:, None] - (x + w)[None, :]) <= delta)
        & (np.abs((y + h)[:, None] - (y + h)[None, :]) <= delta)
    )
    label = np.full(len(rects), -1)
    groups: list[np.ndarray] = []
    for start in range(len(rects)):
        if label[start] >= 0:
            continue
        label[start], stack, members = len(groups), [start], [start]
        while stack:
            for other in np.flatnonzero(similar[stack.pop()] & (label < 0)):
                label[other] = len(groups)
                stack.append(int(other))
                members.append(int(other))
        groups.append(np.array(members))
    return groups


def _haar_certain(found: list[Box], unsearched: int) -> Box | None:
    """The largest grouped box of the whole search, if the windows found so far (every side above
    ``unsearched``) already decide it whatever the windows of side <= ``unsearched`` turn out to be;
    else None. The module's docstring says why each test below is enough."""
    if not found:
        return None
    rects = np.array(found, dtype=np.int64)
    reach = 1.4 * unsearched + 1  # a window of side <= unsearched is similar to none wider or taller than 1.4x it
    if np.count_nonzero((rects[:, 2] > reach) | (rects[:, 3] > reach)) <= HAAR_MIN_NEIGHBORS:
        return None  # too few windows out of reach to make a final class
    closed: list[tuple[Box, int]] = []  # (grouped box, members) of classes no unseen window can join
    bound_w = bound_h = float(unsearched)  # widest mean of any class unseen windows may still change or form
    for members in _haar_groups(rects):
        part = rects[members]
        if np.all((part[:, 2] > reach) | (part[:, 3] > reach)):
            if len(members) > HAAR_MIN_NEIGHBORS:
                grouped, weights = cv2.groupRectangles(part.tolist(), HAAR_MIN_NEIGHBORS, HAAR_GROUP_EPS)
                if len(grouped) != 1 or int(weights[0]) != len(members):
                    return None  # not one OpenCV class after all: decide on the whole search
                gx, gy, gw, gh = (int(v) for v in grouped[0])
                closed.append(((gx, gy, gw, gh), len(members)))
        else:
            bound_w, bound_h = max(bound_w, part[:, 2].mean()), max(bound_h, part[:, 3].mean())
    if not closed:
        return None
    best, count = max(closed, key=lambda item: item[0][2] * item[0][3])
    x, y, w, h = best
    bound_w, bound_h = int(bound_w) + 2, int(bound_h) + 2  # above OpenCV's rounded mean, whatever its rounding
    if sum(1 for box, _ in closed if box[2] * box[3] == w * h) > 1 or w * h <= bound_w * bound_h:
        return None  # a tie, or a class still open could be as large
    if w <= 1.4 * bound_w + 2 and h <= 1.4 * bound_h + 2:
        return None  # a class still open could be large enough to hold it, and drop it
    for (ox, oy, ow, oh), other in closed:
        dx, dy = int(np.ceil(ow * HAAR_GROUP_EPS)) + 1, int(np.ceil(oh * HAAR_GROUP_EPS)) + 1
        inside = x >= ox - dx and y >= oy - dy and x + w <= ox + ow + dx and y + h <= oy + oh + dy
        if other > max(3, count) and inside:
            return None  # OpenCV may drop it as a small box inside a larger one with more neighbours
    return best


def largest_full(cascade: cv2.CascadeClassifier, gray: np.ndarray) -> Box | None:
    """The original search: every scale at once, then the largest grouped box."""
    found = cascade.detectMultiScale(gray, scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=HAAR_MIN_NEIGHBORS)
    return _largest([(int(x), int(y), int(w), int(h)) for x, y, w, h in found])


def largest(cascade: cv2.CascadeClassifier, gray: np.ndarray) -> Box | None:
    """``largest_full``'s box, searching bands of window sides from the largest down and stopping
    once no smaller window can change it (the module's docstring says why it is the same box)."""
    sides = _haar_window_sides(cascade, gray.shape)
    if sides is None:
        return largest_full(cascade, gray)
    bands = _haar_bands(sides)
    found: list[Box] = []
    for index, (low, high) in enumerate(bands):
        found += _haar_raw(cascade, gray, low, high)
        box = _haar_certain(found, bands[index + 1][1] if index + 1 < len(bands) else 0)
        if box is not None:
            return box
    if not found:
        return None
    grouped, _ = cv2.groupRectangles([list(box) for box in found], HAAR_MIN_NEIGHBORS, HAAR_GROUP_EPS)
    boxes = [(int(x), int(y), int(w), int(h)) for x, y, w, h in grouped]
    areas = [w * h for _, _, w, h in boxes]
    if areas and areas.count(max(areas)) > 1:
        return largest_full(cascade, gray)  # a tie: the one OpenCV's own order puts first
    return _largest(boxes)
