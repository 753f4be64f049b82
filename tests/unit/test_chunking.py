"""preprocess_service.inference.base.in_chunks: calls larger than a model's max batch are split.

Every backend relies on it: a piece larger than ``max_batch_size`` is refused by Triton, and pieces
concatenated out of order would give one video's scores to another's frames.
"""

from __future__ import annotations

import asyncio

import numpy as np

from preprocess_service.inference.base import in_chunks


class Recorder:
    """A model call that records the size of every piece and answers ``piece * 2``."""

    def __init__(self, delay_of=None) -> None:
        self.sizes: list[int] = []
        self.in_flight = self.most_in_flight = 0
        self._delay_of = delay_of or (lambda call_number: 0.0)

    async def __call__(self, piece: np.ndarray) -> np.ndarray:
        call_number = len(self.sizes)
        self.sizes.append(len(piece))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await asyncio.sleep(self._delay_of(call_number))
        self.in_flight -= 1
        return piece * 2


def test_a_batch_below_the_maximum_is_one_call() -> None:
    call, batch = Recorder(), np.arange(3, dtype=np.float32)
    result = asyncio.run(in_chunks(call, batch, 4))
    assert call.sizes == [3]
    np.testing.assert_array_equal(result, batch * 2)


def test_a_batch_at_the_maximum_is_one_call() -> None:
    call, batch = Recorder(), np.arange(4, dtype=np.float32)
    asyncio.run(in_chunks(call, batch, 4))
    assert call.sizes == [4]


def test_a_larger_batch_is_split_into_pieces_of_at_most_the_maximum_in_order() -> None:
    call, batch = Recorder(), np.arange(10 * 3, dtype=np.float32).reshape(10, 3)
    result = asyncio.run(in_chunks(call, batch, 4))
    assert call.sizes == [4, 4, 2]
    assert result.shape == (10, 3)
    np.testing.assert_array_equal(result, batch * 2)


def test_one_more_than_the_maximum_is_two_calls() -> None:
    call = Recorder()
    result = asyncio.run(in_chunks(call, np.arange(5), 4))
    assert call.sizes == [4, 1]
    np.testing.assert_array_equal(result, np.arange(5) * 2)


def test_a_maximum_of_one_calls_once_per_row() -> None:
    call = Recorder()
    result = asyncio.run(in_chunks(call, np.arange(6), 1))
    assert call.sizes == [1] * 6
    np.testing.assert_array_equal(result, np.arange(6) * 2)


def test_pieces_that_finish_out_of_order_are_still_concatenated_in_order() -> None:
    call = Recorder(delay_of=lambda n: 0.03 * (3 - n))  # the first piece answers last
    batch = np.arange(12, dtype=np.int64)
    result = asyncio.run(in_chunks(call, batch, 3))
    np.testing.assert_array_equal(result, batch * 2)


def test_pieces_run_concurrently() -> None:
    call = Recorder(delay_of=lambda n: 0.01)
    asyncio.run(in_chunks(call, np.arange(9), 3))
    assert call.most_in_flight == 3


def test_an_empty_batch_is_one_call_with_an_empty_answer() -> None:
    call = Recorder()
    result = asyncio.run(in_chunks(call, np.zeros((0, 5), np.float32), 4))
    assert call.sizes == [0]
    assert result.shape == (0, 5)
