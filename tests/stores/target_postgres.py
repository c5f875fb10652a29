"""The PostgreSQL store's target: a fresh schema per test, dropped afterwards."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from horae.stores.base import Store
from horae.stores.postgres import PostgresStore
from tests.services import POSTGRES_DSN, unavailable


def require_asyncio() -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pytest.skip("asyncpg runs on asyncio only")


async def connect() -> Any:
    """A connection of its own to the test server (skips or fails when unreachable)."""
    require_asyncio()
    import asyncpg

    try:
        return await asyncpg.connect(POSTGRES_DSN, timeout=5)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL at {POSTGRES_DSN}", exc)
        raise  # unreachable: unavailable() skips or fails


@asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A unique schema name for one test; the schema is dropped afterwards."""
    conn = await connect()
    schema = f"horae_test_{uuid.uuid4().hex}"
    try:
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


@asynccontextmanager
async def target() -> AsyncIterator[Callable[[], Store]]:
    async with fresh_schema() as schema:
        yield lambda: PostgresStore(POSTGRES_DSN, schema=schema)


async def corrupt(store: Store, job_id: str) -> None:
    """Write a payload no reader can parse into the job's row."""
    assert isinstance(store, PostgresStore)
    conn = await connect()
    try:
        await conn.execute(
            f'UPDATE "{store.schema}".jobs SET payload = $2 WHERE id = $1', job_id, "{not json"
        )
    finally:
        await conn.close()
