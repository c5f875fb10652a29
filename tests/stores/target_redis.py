"""The Redis store's target: a key prefix of its own per test, deleted afterwards."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import sniffio

from horae.stores.base import Store
from horae.stores.redis import RedisStore
from tests.services import REDIS_URL, unavailable

redis_asyncio = pytest.importorskip("redis.asyncio")


async def delete_prefix(client: redis_asyncio.Redis, prefix: str) -> None:
    """Delete every key under ``prefix`` (SCAN, then DEL in batches)."""
    batch: list[bytes] = []
    async for key in client.scan_iter(match=f"{prefix}:*", count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await client.delete(*batch)
            batch.clear()
    if batch:
        await client.delete(*batch)


@asynccontextmanager
async def target() -> AsyncIterator[Callable[[], Store]]:
    if sniffio.current_async_library() != "asyncio":
        pytest.skip("RedisStore needs the asyncio backend (redis-py's client is asyncio-only)")
    prefix = f"horae-test-{uuid.uuid4().hex}"
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        unavailable(f"Redis at {REDIS_URL}", exc)
    try:
        yield lambda: RedisStore(REDIS_URL, prefix=prefix)
    finally:
        await delete_prefix(client, prefix)
        await client.aclose()


async def corrupt(store: Store, job_id: str) -> None:
    """Overwrite the job's stored payload with text that is not JSON."""
    assert isinstance(store, RedisStore)
    client = store._started_client()
    await client.hset(f"{store._prefix}:job:{job_id}", "payload", "{not json")
