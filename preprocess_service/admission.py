"""How many uploads are in progress at once: a bounded number of analysis slots.

Past the bound a request is refused with 503 + ``Retry-After`` before a byte of its upload is read,
so a burst queues in the clients (which retry), not in this process's memory and temporary files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from preprocess_service.errors import Overloaded
from preprocess_service.metrics import Metrics


class Admission:
    def __init__(self, max_in_flight: int, retry_after_s: int, metrics: Metrics) -> None:
        self.max_in_flight, self.retry_after_s, self._metrics = max_in_flight, retry_after_s, metrics
        self.in_flight = 0  # the event loop is the only writer: no lock needed

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self.in_flight >= self.max_in_flight:
            self._metrics.rejected.inc()
            raise Overloaded(
                f"{self.in_flight} requests are in progress; retry shortly",
                headers={"Retry-After": str(self.retry_after_s)},
            )
        self.in_flight += 1
        self._metrics.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight -= 1
            self._metrics.in_flight.dec()
