"""What the dashboard's and CLI's store reads cost: the listings against a page of jobs.

Not part of the test run. For the SQLite, PostgreSQL and Redis stores, with ``--jobs``
jobs stored (10,000 by default), of which ``--page`` (1,000) have runs (half finished,
half in flight), and 5 schedulers in the register, it prints the median of ``--repeat``
calls of:

- ``get_job_ids()`` (every job id);
- ``get_latest_runs(page)``, one call for a page of jobs, against the page read the old
  way, ``get_runs(job_id, limit=1)`` once per job;
- ``get_runs_in_flight()`` and ``get_schedulers(now)``;
- ``heartbeat(info)``, what each scheduler writes every third of its lease.

    python benchmarks/listings.py [--jobs 10000] [--page 1000] [--stores sqlite,postgres,redis]

PostgreSQL and Redis are read from ``HORAE_POSTGRES_DSN`` and ``HORAE_REDIS_URL`` (the
test addresses by default); each run works in a schema / key prefix / SQLite file of its
own, removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import attrs

from horae import IntervalTrigger, Job, Run, RunOutcome
from horae.stores.base import Release, SchedulerInfo, Store, StoreContext

POSTGRES = os.environ.get("HORAE_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("HORAE_REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = datetime(2027, 1, 1, tzinfo=timezone.utc)


async def noop() -> None:
    """The jobs' callable (never run here)."""


def job(job_id: str) -> Job:
    return Job(
        id=job_id,
        func=noop,
        func_ref="benchmarks.listings:noop",
        trigger=IntervalTrigger(hours=1, start_date=T0, timezone="UTC"),
        next_run_time=T0,
    )


@asynccontextmanager
async def place(name: str) -> AsyncIterator[Store]:
    """A started store of kind ``name`` on a place of its own, removed afterwards."""
    tag = f"horae_bench_{uuid.uuid4().hex[:10]}"
    store: Store
    if name == "sqlite":
        from horae import SQLiteStore

        with tempfile.TemporaryDirectory() as folder:
            store = SQLiteStore(Path(folder) / f"{tag}.db")
            async with _started(store):
                yield store
        return
    if name == "postgres":
        import asyncpg

        from horae import PostgresStore

        store = PostgresStore(POSTGRES, schema=tag)
        try:
            async with _started(store):
                yield store
        finally:
            conn = await asyncpg.connect(POSTGRES)
            await conn.execute(f'DROP SCHEMA IF EXISTS "{tag}" CASCADE')
            await conn.close()
        return
    from redis import asyncio as redis_asyncio

    from horae import RedisStore

    store = RedisStore(REDIS, prefix=tag)
    try:
        async with _started(store):
            yield store
    finally:
        client = redis_asyncio.from_url(REDIS)
        keys = [key async for key in client.scan_iter(match=f"{tag}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@asynccontextmanager
async def _started(store: Store) -> AsyncIterator[None]:
    await store.start(StoreContext(scheduler_id="bench", wakeup=lambda: None, publish=print))
    try:
        yield
    finally:
        await store.stop()


async def fill(store: Store, jobs: int, page: int) -> list[str]:
    """``jobs`` jobs; the first ``page`` get a run each (in flight for half of them)."""
    ids = [f"job-{i:06d}" for i in range(jobs)]
    for start in range(0, jobs, 1000):
        await store.add_jobs([job(j) for j in ids[start : start + 1000]], replace=False)
    for start in range(0, page, 500):
        leases = await store.acquire_jobs(
            "s1", T0, limit=min(500, page - start), lease_duration=3600
        )
        runs = {
            lease.job_id: Run(job_id=lease.job_id, scheduled_time=T0, scheduler_id="s1")
            for lease in leases
        }
        releases = [
            Release(
                lease=lease, next_run_time=T0 + timedelta(hours=1), started=[runs[lease.job_id]]
            )
            for lease in leases
        ]
        await store.release_jobs("s1", releases)
        for index, run in enumerate(runs.values()):
            if index % 2 == 0:
                done = attrs.evolve(run, outcome=RunOutcome.SUCCESS, started_at=T0, finished_at=T0)
                await store.finish_run(done)
    for n in range(5):
        await store.heartbeat(info(f"scheduler-{n}"))
    return ids


def info(scheduler_id: str) -> SchedulerInfo:
    now = datetime.now(timezone.utc)
    return SchedulerInfo(
        id=scheduler_id,
        host="bench",
        pid=os.getpid(),
        started_at=now,
        heartbeat_at=now,
        expires_at=now + timedelta(seconds=30),
    )


async def median_ms(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        await call()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


async def measure(name: str, jobs: int, page: int, repeat: int) -> dict[str, float]:
    async with place(name) as store:
        ids = await fill(store, jobs, page)
        shown = ids[:page]

        async def one_by_one() -> None:
            for job_id in shown:
                await store.get_runs(job_id, limit=1)

        now = datetime.now(timezone.utc)
        return {
            "get_job_ids": await median_ms(store.get_job_ids, repeat),
            "get_latest_runs(page)": await median_ms(lambda: store.get_latest_runs(shown), repeat),
            "get_runs(id, 1) x page": await median_ms(one_by_one, max(1, repeat // 3)),
            "get_runs_in_flight": await median_ms(store.get_runs_in_flight, repeat),
            "get_schedulers": await median_ms(lambda: store.get_schedulers(now), repeat),
            "heartbeat": await median_ms(lambda: store.heartbeat(info("scheduler-0")), repeat),
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--stores", default="sqlite,postgres,redis")
    args = parser.parse_args()
    names = args.stores.split(",")
    results = {name: await measure(name, args.jobs, args.page, args.repeat) for name in names}
    print(f"listings: {args.jobs} jobs, a page of {args.page}; median ms of {args.repeat} calls")
    print(f"{'call':<26}" + "".join(f"{name:>12}" for name in names))
    for row in next(iter(results.values())):
        print(f"{row:<26}" + "".join(f"{results[name][row]:>12.2f}" for name in names))


if __name__ == "__main__":
    anyio.run(main)
