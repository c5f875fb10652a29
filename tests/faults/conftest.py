"""Fixtures of the fault suite: its own servers (started once per session) and places.

The servers are started only when a test needs them, and stopped, by their pid, at the
end of the session; see ``servers.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .common import STORES
from .servers import PostgresServer, RedisServer, postgres_server, redis_server


@pytest.fixture
def anyio_backend() -> str:
    # The workers run asyncio, and PostgresStore and RedisStore need it here too.
    return "asyncio"


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    """The store a test runs on: each test of the suite runs on every persistent store."""
    return str(request.param)


@pytest.fixture(scope="session")
def faults_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(scope="session")
def faults_postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture
def server(store: str, request: pytest.FixtureRequest) -> RedisServer | PostgresServer | None:
    """The throwaway server of ``store`` (None for SQLite, which has none)."""
    if store == "redis":
        return request.getfixturevalue("faults_redis")  # type: ignore[no-any-return]
    if store == "postgres":
        return request.getfixturevalue("faults_postgres")  # type: ignore[no-any-return]
    return None
