"""What ``share_events=True`` costs: a burst of due no-op jobs, with and without sharing.

Not part of the test run. For each store, runs a burst of ``--size`` due jobs (added
while paused, then resumed; counted by a listener on EVENT_JOB_EXECUTED) with
``share_events`` False and True, alternately, ``--repeat`` times each in fresh
subprocesses, and prints the median runs/s of each and the difference::

    /work/venv/bin/python benchmarks/share_events.py --stores memory,postgres --size 10000

PostgreSQL and Redis are read from ``HORAE_POSTGRES_DSN`` / ``HORAE_REDIS_URL`` (the
test defaults otherwise); each run uses a schema / key prefix of its own, removed after.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

POSTGRES_DSN = os.environ.get("HORAE_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HORAE_REDIS_URL", "redis://127.0.0.1:6379/0")
STORES = ("memory", "sqlite", "postgres", "redis")


async def noop() -> None:
    pass


async def burst(kind: str, size: int, share: bool) -> float:
    import anyio

    from horae import EVENT_JOB_EXECUTED, AsyncScheduler, Event
    from horae.stores.base import Store

    done = anyio.Event()
    count = 0

    def one(event: Event) -> None:
        nonlocal count
        count += 1
        if count >= size:
            done.set()

    name = f"horae_bench_{uuid.uuid4().hex[:12]}"
    directory = tempfile.mkdtemp(prefix="horae-bench-")
    store: Store
    if kind == "postgres":
        from horae.stores.postgres import PostgresStore

        store = PostgresStore(POSTGRES_DSN, schema=name)
    elif kind == "redis":
        from horae.stores.redis import RedisStore

        store = RedisStore(REDIS_URL, prefix=name)
    elif kind == "sqlite":
        from horae.stores.sqlite import SQLiteStore

        store = SQLiteStore(os.path.join(directory, "jobs.sqlite"))
    else:
        from horae.stores.memory import MemoryStore

        store = MemoryStore()
    try:
        async with AsyncScheduler(store, share_events=share) as scheduler:
            scheduler.add_listener(one, EVENT_JOB_EXECUTED)
            await scheduler.pause()
            past = datetime.now(timezone.utc) - timedelta(seconds=1)
            jobs = [
                scheduler._build_job("__main__:noop", "date", {}, {"run_date": past})
                for _ in range(size)
            ]
            for i in range(0, size, 1000):
                await scheduler.store.add_jobs(jobs[i : i + 1000], replace=False)
            gc.collect()
            start = time.perf_counter()
            await scheduler.resume()
            await done.wait()
            elapsed = time.perf_counter() - start
            await scheduler.shutdown(wait=False)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        await _clean(kind, name)
    return size / elapsed


async def _clean(kind: str, name: str) -> None:
    if kind == "postgres":
        import asyncpg

        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()
    elif kind == "redis":
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=f"{name}:*")]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default=",".join(STORES))
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("STORE", "SHARE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, share = args.one
        print(json.dumps(asyncio.run(burst(kind, args.size, share == "1"))))
        return
    print(f"burst of {args.size} due no-op jobs, runs/s (median of {args.repeat})")
    print(f"{'store':<10} {'off':>10} {'on':>10} {'cost':>7}")
    for kind in args.stores.split(","):
        rates: dict[str, list[float]] = {"0": [], "1": []}
        for _ in range(args.repeat):
            for share in ("0", "1"):
                out = subprocess.run(
                    [sys.executable, __file__, "--size", str(args.size), "--one", kind, share],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                rates[share].append(float(out.stdout.strip().splitlines()[-1]))
        off, on = (statistics.median(rates[s]) for s in ("0", "1"))
        print(f"{kind:<10} {off:>10,.0f} {on:>10,.0f} {(on - off) / off:>7.0%}")


if __name__ == "__main__":
    main()
