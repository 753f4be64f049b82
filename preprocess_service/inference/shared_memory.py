"""System shared memory regions for face crops (service and Triton on one host only).

One region per admitted upload, registered with Triton once at start, so a backbone request carries
a region name instead of megabytes of pixels. A restarted Triton forgets registrations: after a
failed call the pool registers every region again before the next use.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import tritonclient.utils.shared_memory as system_shm

from preprocess_service.errors import BackendUnavailable

Call = Callable[..., Awaitable[Any]]  # the backend's call: deadline and error mapping included


class SharedMemoryPool:
    def __init__(self, count: int) -> None:
        self._count = count
        self._free: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._all: list[tuple[str, Any]] = []
        self._byte_size = 0
        self._stale = False

    @property
    def opened(self) -> bool:
        return bool(self._all)

    async def open(self, call: Call, byte_size: int) -> None:
        self._byte_size = byte_size
        for index in range(self._count):
            name = f"deepfake_faces_{os.getpid()}_{index}"
            handle = system_shm.create_shared_memory_region(name, f"/{name}", byte_size)
            self._all.append((name, handle))  # destroyed by close() even if registering fails
            await call("register_system_shared_memory", name, f"/{name}", byte_size)
            self._free.put_nowait((name, handle))

    @asynccontextmanager
    async def holding(self, call: Call, data: np.ndarray) -> AsyncIterator[str]:
        """A region holding ``data``, for the duration of one request; yields its name."""
        name, handle = await self._free.get()
        try:
            if self._stale:
                await self._reregister(call)
            system_shm.set_shared_memory_region(handle, [data])
            yield name
        except BackendUnavailable:
            self._stale = True
            raise
        finally:
            self._free.put_nowait((name, handle))

    async def _reregister(self, call: Call) -> None:
        for name, _ in self._all:
            try:
                await call("unregister_system_shared_memory", name)
            except BackendUnavailable:
                pass
            await call("register_system_shared_memory", name, f"/{name}", self._byte_size)
        self._stale = False

    async def close(self, call: Call) -> None:
        for name, handle in self._all:
            try:
                await call("unregister_system_shared_memory", name)
            except BackendUnavailable:
                pass  # Triton is gone; its registrations went with it
            system_shm.destroy_shared_memory_region(handle)
        self._all.clear()
