"""Fixtures of the conformance suite: every store must pass every test in tests/stores.

Each store has a *target* module here, ``target_<name>.py``, with an async context
manager ``target()`` that prepares an empty place for one test (a temporary SQLite file,
a PostgreSQL schema, a Redis key prefix), yields a factory making new store instances on
that place, and cleans the place up afterwards. Stores sharing one place is how the suite
checks persistence across restarts and processes.

Store tests that need a server skip when it is unreachable, unless
``HORAE_REQUIRE_SERVICES=1`` (as in CI), where they fail.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable

import pytest

from horae.stores.base import Store, StoreContext

STORE_NAMES = ["memory", "sqlite", "postgres", "redis"]
StoreFactory = Callable[[], Store]


def _available() -> list[str]:
    names = []
    for name in STORE_NAMES:
        try:
            importlib.import_module(f"tests.stores.target_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"tests.stores.target_{name}":
                raise
            continue
        names.append(name)
    return names


@pytest.fixture(params=_available())
def store_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store_factory(store_name: str) -> AsyncIterator[StoreFactory]:
    module = importlib.import_module(f"tests.stores.target_{store_name}")
    async with module.target() as factory:
        yield factory


def context(scheduler_id: str = "test") -> StoreContext:
    return StoreContext(scheduler_id=scheduler_id, wakeup=lambda: None, publish=lambda e: None)


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[Store]:
    store = store_factory()
    await store.start(context())
    try:
        yield store
    finally:
        await store.stop()


ASYNCIO_ONLY = ("postgres", "redis")  # asyncpg and redis-py run on asyncio only


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out (rather than skip) the trio runs of the asyncio-only stores' tests.

    A skip would read like a missing server; these combinations do not exist at all
    (RedisStore and PostgresStore refuse trio in start(), which their own tests check).
    """
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if params.get("anyio_backend") == "trio" and params.get("store_name") in ASYNCIO_ONLY:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep
