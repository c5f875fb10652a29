"""The store fixture of the conformance suite: every store must pass every test here.

Persistent stores join the ``params`` list as they are built; each gets its own schema or
key prefix so that parallel runs do not collide.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from horae.stores.base import Store, StoreContext
from horae.stores.memory import MemoryStore

STORES: dict[str, Callable[[], Store]] = {
    "memory": MemoryStore,
}


@pytest.fixture(params=sorted(STORES))
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    store = STORES[request.param]()
    await store.start(
        StoreContext(scheduler_id="test", wakeup=lambda: None, publish=lambda e: None)
    )
    try:
        yield store
    finally:
        await store.stop()
