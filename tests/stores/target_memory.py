"""The memory store's target: one store instance shared by every "restart"."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from horae.stores.base import Store
from horae.stores.memory import MemoryStore


@asynccontextmanager
async def target() -> AsyncIterator[Callable[[], Store]]:
    # A memory store lives as long as its object: the same instance plays every restart.
    store = MemoryStore()
    yield lambda: store
