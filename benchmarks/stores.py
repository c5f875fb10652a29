"""How fast horae's stores add and run jobs, beside APScheduler 3.11 and 4.0 and the raw limits.

Not part of the test run. Like ``benchmarks/scheduler.py`` this is a driver: every
measurement runs in a fresh subprocess with the right interpreter (APScheduler 3 and 4
are both the ``apscheduler`` package, so they live in two virtualenvs), and the driver
prints one table with the target beside each row:

    python3 -m venv /work/benchvenv
    /work/benchvenv/bin/pip install -e . 'apscheduler==3.11.*' asyncpg redis \\
        sqlalchemy psycopg2-binary
    python3 -m venv /work/benchvenv4
    /work/benchvenv4/bin/pip install -e . --pre 'apscheduler==4.0.0a6' \\
        'sqlalchemy[asyncio]' asyncpg
    /work/benchvenv/bin/python benchmarks/stores.py --aps4-python /work/benchvenv4/bin/python

(``python3 -m nox -s bench`` does all of that.) PostgreSQL and Redis are read from
``HORAE_POSTGRES_DSN`` and ``HORAE_REDIS_URL`` (the test addresses by default). Every
measurement works in a schema / key prefix / SQLite file of its own named
``horae_bench_<random>``, and removes it afterwards.

Rows, for horae's memory, SQLite, PostgreSQL and Redis stores at 1k, 10k and 100k jobs:

- adding: ``scheduler.add_job`` one at a time on a started scheduler (interval jobs an
  hour apart, none fires), and the batch path, ``scheduler.add_jobs`` with 1,000 specs a
  call (checked and encoded like add_job, one store round trip a call). Jobs/s.
- a burst: n no-op coroutine jobs all due at once (date trigger in the past, added in
  batches while the scheduler is paused), runs/s from ``resume()`` until the last run
  finished, counted by a listener on ``EVENT_JOB_EXECUTED``. Each (job id, fire time)
  the listener sees is tallied: "dup" counts pairs seen more than once, "lost" the
  pairs never seen.
- PostgreSQL and Redis with 1, 2 and 4 scheduler processes sharing the store (10k burst):
  each process starts paused and says "ready"; the driver says "go" to all of them and
  stops them once the sum of their runs reached n (or nothing moved for a while); each
  reports its (job id, fire time) pairs, which the driver merges to count duplicates
  and losses. Runs/s is n / (last run finished anywhere - go).

APScheduler 3.11 (SQLAlchemyJobStore on SQLite and PostgreSQL, RedisJobStore) and
APScheduler 4.0.0a6 (SQLAlchemyDataStore on asyncpg) get the same add and burst rows
(APScheduler 3 has no batch add and cannot share a job store between processes, so those
cells stay empty; APScheduler 4 shares its store through the asyncpg event broker). They
are slow, so each of their runs gets a time budget; "(n in s)" is what it managed, a
larger add is skipped once a smaller one ran out of budget, and a burst is skipped when
adding its jobs would take longer than the set-up budget (judged by the add rate).

The raw limits: a bare asyncpg loop of ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP
LOCKED LIMIT 100) RETURNING`` on a plain table of 100k due rows (1 and 2 connections),
and a bare Redis Lua loop of ZRANGEBYSCORE + ZREM of 100 per call on a sorted set of
100k members.

``--spec JSON`` (what the driver calls) runs one measurement and prints JSON; a
``"profile": FILE`` entry in it writes a pyinstrument (``.txt``/``.html``) or cProfile
(``.prof``) profile of a burst's timed part. ``--profile-dir DIR`` makes the driver
profile horae's PostgreSQL and Redis bursts that way as extra runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
SIZES = (1_000, 10_000, 100_000)
SHARED_SIZE = 10_000
APS4_SHARED_SIZE = 1_000
PROCESSES = (1, 2, 4)
RAW_ROWS = 100_000
BATCH = 1_000
PG_DSN = os.environ.get("HORAE_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("HORAE_REDIS_URL", "redis://127.0.0.1:6379/0")

Result = dict[str, Any]


# ------------------------------------------------------------- the job and its tally
# The job lives at module level: persistent stores keep a reference to it. Every
# measurement runs this file as __main__, so "__main__:noop" imports back in each.


async def noop() -> None:
    """The job of every row."""


class Tally:
    """Counts runs by (job id, fire time); sets ``done`` when ``target`` pairs were seen."""

    def __init__(self, target: int, done: Any) -> None:
        self.target = target
        self.done = done
        self.pairs: Counter[tuple[str, float]] = Counter()
        self.count = 0
        self.last = 0.0  # time.time() of the latest run seen

    def see(self, job_id: str, fire_time: datetime | None) -> None:
        self.pairs[str(job_id), fire_time.timestamp() if fire_time else 0.0] += 1
        self.count += 1
        self.last = time.time()
        if self.count == self.target and self.done is not None:
            self.done.set()

    def summary(self, expected: int) -> Result:
        return {
            "count": self.count,
            "distinct": len(self.pairs),
            "dup": sum(c - 1 for c in self.pairs.values() if c > 1),
            "lost": max(0, expected - len(self.pairs)),
        }


_profiler: Any = None
_profile_path: str | None = None


def _profile_start() -> None:
    global _profiler
    if _profile_path is None:
        return
    if _profile_path.endswith(".prof"):
        import cProfile

        _profiler = cProfile.Profile()
        _profiler.enable()
    else:
        from pyinstrument import Profiler

        _profiler = Profiler(interval=0.0005, async_mode="disabled")
        _profiler.start()


def _profile_stop() -> None:
    if _profiler is None or _profile_path is None:
        return
    if _profile_path.endswith(".prof"):
        _profiler.disable()
        _profiler.dump_stats(_profile_path)
    else:
        _profiler.stop()
        with open(_profile_path, "w") as out:
            if _profile_path.endswith(".html"):
                out.write(_profiler.output_html())
            else:
                out.write(_profiler.output_text(unicode=True, show_all=False))


def _timed_out(start: float, budget: float) -> bool:
    return time.perf_counter() - start > budget


# ------------------------------------------------------------------ names and cleanup


def _sqlite_path(name: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"{name}.sqlite")


async def cleanup(names: list[str]) -> Result:
    """Drop every schema, Redis key and SQLite file a measurement named ``names`` left."""
    removed = 0
    for name in names:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(_sqlite_path(name) + suffix)
                removed += 1
    with contextlib.suppress(ImportError, OSError):
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            for name in names:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()
    with contextlib.suppress(ImportError, OSError):
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            for name in names:
                keys = [key async for key in client.scan_iter(match=f"{name}:*", count=1000)]
                for i in range(0, len(keys), 1000):
                    removed += await client.unlink(*keys[i : i + 1000])
        finally:
            await client.aclose()
    return {"removed": removed}


# -------------------------------------------------------------------------- horae


def _horae_store(kind: str, name: str) -> Any:
    if kind == "memory":
        from horae import MemoryStore

        return MemoryStore()
    if kind == "sqlite":
        from horae import SQLiteStore

        return SQLiteStore(_sqlite_path(name))
    if kind == "postgres":
        from horae.stores.postgres import PostgresStore

        return PostgresStore(PG_DSN, schema=name)
    if kind == "redis":
        from horae.stores.redis import RedisStore

        return RedisStore(REDIS_URL, prefix=name)
    raise ValueError(kind)


def _horae_jobs(n: int, trigger: Any, first: datetime) -> Any:
    """``n`` due Job values in batches of BATCH, to set up a burst (not timed)."""
    from horae import Job
    from horae.refs import callable_to_ref

    ref = callable_to_ref(noop)
    for start in range(0, n, BATCH):
        yield [
            Job(
                id=uuid.uuid4().hex,
                func=noop,
                func_ref=ref,
                trigger=trigger,
                name="noop",
                executor="async",
                misfire_grace_time=None,
                next_run_time=first,
            )
            for _ in range(min(BATCH, n - start))
        ]


async def horae_add(store: str, name: str, n: int, budget: float, batch: bool) -> Result:
    from horae import AsyncScheduler

    async with AsyncScheduler(_horae_store(store, name)) as scheduler:
        gc.collect()
        start = time.perf_counter()
        added = 0
        if batch:
            while added < n:
                count = min(BATCH, n - added)
                await scheduler.add_jobs(
                    [{"func": noop, "trigger": "interval", "hours": 1} for _ in range(count)]
                )
                added += count
                if _timed_out(start, budget):
                    break
        else:
            while added < n:
                for _ in range(min(BATCH, n - added)):
                    await scheduler.add_job(noop, "interval", hours=1)
                added = min(n, added + BATCH)
                if _timed_out(start, budget):
                    break
        elapsed = time.perf_counter() - start
        await scheduler.shutdown(wait=False)
    return {"count": added, "seconds": elapsed}


async def _horae_add_due(scheduler: Any, n: int) -> None:
    from horae import DateTrigger

    past = datetime.now(UTC) - timedelta(seconds=1)
    for jobs in _horae_jobs(n, DateTrigger(past, timezone="UTC"), past):
        await scheduler.store.add_jobs(jobs, replace=False)


def _horae_listener(tally: Tally, scheduler_id: str) -> Callable[[Any], None]:
    def executed(event: Any) -> None:
        # With share_events=True, other schedulers' runs would arrive here too.
        if getattr(event, "origin", None) in (None, scheduler_id):
            tally.see(event.job_id, event.scheduled_time)

    return executed


async def horae_burst(store: str, name: str, n: int, budget: float) -> Result:
    import anyio

    from horae import EVENT_JOB_EXECUTED, AsyncScheduler

    tally = Tally(n, anyio.Event())
    scheduler = AsyncScheduler(_horae_store(store, name))
    scheduler.add_listener(_horae_listener(tally, scheduler.id), EVENT_JOB_EXECUTED)
    await scheduler.pause()  # before it starts: nothing is acquired until resume()
    async with scheduler:
        await _horae_add_due(scheduler, n)
        gc.collect()
        start = time.perf_counter()
        _profile_start()
        await scheduler.resume()
        with anyio.move_on_after(budget):
            await tally.done.wait()
        elapsed = time.perf_counter() - start
        _profile_stop()
        await scheduler.shutdown(wait=False)
    return {"seconds": elapsed, **tally.summary(n)}


async def horae_setup(store: str, name: str, n: int) -> Result:
    from horae import AsyncScheduler

    scheduler = AsyncScheduler(_horae_store(store, name), role="client")
    async with scheduler:
        await _horae_add_due(scheduler, n)
    return {"count": n}


async def _await_line(expected: str) -> None:
    import anyio

    line = await anyio.to_thread.run_sync(sys.stdin.readline)
    if line.strip() != expected:
        raise SystemExit(f"worker: expected {expected!r} from the driver, got {line!r}")


async def _report_progress(tally: Tally) -> None:
    import anyio

    while True:
        print(f"count {tally.count}", flush=True)
        await anyio.sleep(0.05)


async def horae_worker(store: str, name: str, n: int) -> Result:
    """One of several scheduler processes sharing a store (see the module docstring)."""
    import anyio

    from horae import EVENT_JOB_EXECUTED, AsyncScheduler

    tally = Tally(n, None)
    scheduler = AsyncScheduler(_horae_store(store, name))
    scheduler.add_listener(_horae_listener(tally, scheduler.id), EVENT_JOB_EXECUTED)
    await scheduler.pause()
    async with scheduler:
        print("ready", flush=True)
        await _await_line("go")
        _profile_start()
        await scheduler.resume()
        async with anyio.create_task_group() as tg:
            tg.start_soon(_report_progress, tally)
            await _await_line("stop")
            tg.cancel_scope.cancel()
        _profile_stop()
        await scheduler.shutdown(wait=False)
    return {"last": tally.last, "pairs": list(tally.pairs.items())}


# ------------------------------------------------------------------ APScheduler 3


def _aps3_store(kind: str, name: str) -> Any:
    if kind == "sqlite":
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        return SQLAlchemyJobStore(url=f"sqlite:///{_sqlite_path(name)}")
    if kind == "postgres":
        import sqlalchemy
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        url = PG_DSN.replace("postgresql://", "postgresql+psycopg2://", 1)
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'CREATE SCHEMA IF NOT EXISTS "{name}"'))
        return SQLAlchemyJobStore(engine=engine, tableschema=name)
    if kind == "redis":
        from urllib.parse import urlsplit

        from apscheduler.jobstores.redis import RedisJobStore

        parts = urlsplit(REDIS_URL)
        return RedisJobStore(
            jobs_key=f"{name}:jobs",
            run_times_key=f"{name}:run_times",
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 6379,
            db=int((parts.path or "/0").lstrip("/") or 0),
        )
    raise ValueError(kind)


def _aps3_scheduler(store: str, name: str) -> Any:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    return AsyncIOScheduler(jobstores={"default": _aps3_store(store, name)}, timezone=UTC)


async def aps3_add(store: str, name: str, n: int, budget: float) -> Result:
    scheduler = _aps3_scheduler(store, name)
    scheduler.start()
    gc.collect()
    start = time.perf_counter()
    added = 0
    while added < n:
        for _ in range(min(100, n - added)):
            scheduler.add_job(noop, "interval", hours=1)
        added = min(n, added + 100)
        await asyncio.sleep(0)  # as an async caller would: let the loop turn
        if _timed_out(start, budget):
            break
    elapsed = time.perf_counter() - start
    scheduler.shutdown(wait=False)
    return {"count": added, "seconds": elapsed}


async def aps3_burst(store: str, name: str, n: int, budget: float, setup_budget: float) -> Result:
    from apscheduler.events import EVENT_JOB_EXECUTED

    tally = Tally(n, asyncio.Event())
    scheduler = _aps3_scheduler(store, name)
    scheduler.add_listener(lambda e: tally.see(e.job_id, e.scheduled_run_time), EVENT_JOB_EXECUTED)
    scheduler.start(paused=True)
    past = datetime.now(UTC) - timedelta(seconds=1)
    setup = time.perf_counter()
    for i in range(n):
        scheduler.add_job(noop, "date", run_date=past, misfire_grace_time=None)
        if i % 100 == 99 and _timed_out(setup, setup_budget):
            scheduler.shutdown(wait=False)
            return {"error": f"setup: added {i + 1:,} of {n:,} jobs in {setup_budget:.0f} s"}
    gc.collect()
    start = time.perf_counter()
    scheduler.resume()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(tally.done.wait(), budget)
    elapsed = time.perf_counter() - start
    scheduler.shutdown(wait=False)
    return {"seconds": elapsed, **tally.summary(n)}


# ------------------------------------------------------------------ APScheduler 4


def _aps4_parts(name: str, shared: bool) -> tuple[Any, Any, Any]:
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(PG_DSN.replace("postgresql://", "postgresql+asyncpg://", 1))
    store = SQLAlchemyDataStore(engine, schema=name)
    broker = None
    if shared:
        from apscheduler.eventbrokers.asyncpg import AsyncpgEventBroker

        broker = AsyncpgEventBroker.from_async_sqla_engine(engine, channel=name)
    return engine, store, broker


async def _aps4_create_schema(name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"')
    finally:
        await conn.close()


def _aps4_scheduler(store: Any, broker: Any) -> Any:
    from apscheduler import AsyncScheduler

    if broker is None:
        return AsyncScheduler(store)
    return AsyncScheduler(store, broker)


async def aps4_add(store: str, name: str, n: int, budget: float) -> Result:
    from apscheduler.triggers.interval import IntervalTrigger

    await _aps4_create_schema(name)
    engine, data_store, _ = _aps4_parts(name, False)
    try:
        async with _aps4_scheduler(data_store, None) as scheduler:
            await scheduler.start_in_background()
            gc.collect()
            start = time.perf_counter()
            added = 0
            while added < n:
                for _ in range(min(100, n - added)):
                    await scheduler.add_schedule(noop, IntervalTrigger(hours=1))
                added = min(n, added + 100)
                if _timed_out(start, budget):
                    break
            elapsed = time.perf_counter() - start
            await scheduler.stop()
    finally:
        await engine.dispose()
    return {"count": added, "seconds": elapsed}


async def _aps4_add_due(scheduler: Any, n: int, budget: float) -> str | None:
    from apscheduler.triggers.date import DateTrigger

    past = datetime.now(UTC) - timedelta(seconds=1)
    setup = time.perf_counter()
    for i in range(n):
        await scheduler.add_schedule(noop, DateTrigger(past), misfire_grace_time=None)
        if i % 100 == 99 and _timed_out(setup, budget):
            return f"setup: added {i + 1:,} of {n:,} schedules in {budget:.0f} s"
    return None


def _aps4_subscriber(tally: Tally, scheduler_id: str | None) -> Callable[[Any], None]:
    def released(event: Any) -> None:
        # With a shared event broker, other schedulers' releases arrive here too.
        if scheduler_id is None or event.scheduler_id == scheduler_id:
            tally.see(event.schedule_id, event.scheduled_start)

    return released


async def aps4_burst(store: str, name: str, n: int, budget: float, setup_budget: float) -> Result:
    import anyio
    from apscheduler import JobReleased

    await _aps4_create_schema(name)
    engine, data_store, _ = _aps4_parts(name, False)
    tally = Tally(n, anyio.Event())
    try:
        async with _aps4_scheduler(data_store, None) as scheduler:
            scheduler.subscribe(_aps4_subscriber(tally, None), {JobReleased})
            problem = await _aps4_add_due(scheduler, n, setup_budget)  # not started yet
            if problem:
                return {"error": problem}
            gc.collect()
            start = time.perf_counter()
            await scheduler.start_in_background()
            with anyio.move_on_after(budget):
                await tally.done.wait()
            elapsed = time.perf_counter() - start
            await scheduler.stop()
    finally:
        await engine.dispose()
    return {"seconds": elapsed, **tally.summary(n)}


async def aps4_setup(store: str, name: str, n: int, budget: float) -> Result:
    await _aps4_create_schema(name)
    engine, data_store, broker = _aps4_parts(name, True)
    try:
        async with _aps4_scheduler(data_store, broker) as scheduler:
            problem = await _aps4_add_due(scheduler, n, budget)
    finally:
        await engine.dispose()
    return {"error": problem} if problem else {"count": n}


async def aps4_worker(store: str, name: str, n: int) -> Result:
    import anyio
    from apscheduler import JobReleased

    engine, data_store, broker = _aps4_parts(name, True)
    tally = Tally(n, None)
    try:
        async with _aps4_scheduler(data_store, broker) as scheduler:
            scheduler.subscribe(_aps4_subscriber(tally, scheduler.identity), {JobReleased})
            print("ready", flush=True)
            await _await_line("go")
            await scheduler.start_in_background()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_report_progress, tally)
                await _await_line("stop")
                tg.cancel_scope.cancel()
            await scheduler.stop()
    finally:
        await engine.dispose()
    return {"last": tally.last, "pairs": list(tally.pairs.items())}


# --------------------------------------------------------------------- raw limits


async def raw_postgres(name: str, rows: int, connections: int) -> Result:
    import asyncpg

    table = f'"{name}".due'
    setup = await asyncpg.connect(PG_DSN)
    try:
        await setup.execute(f'CREATE SCHEMA IF NOT EXISTS "{name}"')
        await setup.execute(
            f"CREATE TABLE {table} (id bigint PRIMARY KEY, next_run_time timestamptz NOT NULL,"
            " leased_by text, lease_expires timestamptz)"
        )
        await setup.execute(
            f"INSERT INTO {table} (id, next_run_time)"
            " SELECT i, now() - interval '1 second' FROM generate_series(1, $1) AS i",
            rows,
        )
        await setup.execute(
            f"CREATE INDEX ON {table} (next_run_time) WHERE leased_by IS NULL; ANALYZE {table}"
        )
    finally:
        await setup.close()
    acquire = (
        f"UPDATE {table} AS j SET leased_by = $1, lease_expires = now() + interval '30 seconds'"
        f" FROM (SELECT id FROM {table} WHERE leased_by IS NULL AND next_run_time <= now()"
        "  ORDER BY next_run_time LIMIT 100 FOR UPDATE SKIP LOCKED) AS due"
        " WHERE j.id = due.id RETURNING j.id"
    )
    conns = [await asyncpg.connect(PG_DSN) for _ in range(connections)]
    counts = [0] * connections

    async def loop(i: int) -> None:
        stmt = await conns[i].prepare(acquire)
        while got := await stmt.fetch(f"c{i}"):
            counts[i] += len(got)

    try:
        gc.collect()
        start = time.perf_counter()
        await asyncio.gather(*(loop(i) for i in range(connections)))
        elapsed = time.perf_counter() - start
    finally:
        for conn in conns:
            await conn.close()
    return {"count": sum(counts), "seconds": elapsed}


_LUA_ACQUIRE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
if #ids > 0 then redis.call('ZREM', KEYS[1], unpack(ids)) end
return ids
"""


async def raw_redis(name: str, rows: int, connections: int) -> Result:
    import redis.asyncio as aioredis

    key = f"{name}:due"
    clients = [aioredis.Redis.from_url(REDIS_URL) for _ in range(connections)]
    counts = [0] * connections
    try:
        now = time.time()
        async with clients[0].pipeline(transaction=False) as pipe:
            for start in range(0, rows, 1000):
                pipe.zadd(key, {f"job{i}": now - 1 for i in range(start, start + 1000)})
            await pipe.execute()
        sha = await clients[0].script_load(_LUA_ACQUIRE)

        async def loop(i: int) -> None:
            while got := await clients[i].evalsha(sha, 1, key, str(now)):
                counts[i] += len(got)

        gc.collect()
        start = time.perf_counter()
        await asyncio.gather(*(loop(i) for i in range(connections)))
        elapsed = time.perf_counter() - start
    finally:
        await clients[0].delete(key)
        for client in clients:
            await client.aclose()
    return {"count": sum(counts), "seconds": elapsed}


# ------------------------------------------------------------------ one measurement


def _library_version(impl: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    if impl == "raw":
        return platform.python_version()
    try:
        found = version("horae" if impl == "horae" else "apscheduler")
    except PackageNotFoundError:
        raise ImportError(f"not installed in {sys.executable}") from None
    if impl != "horae" and not found.startswith("3." if impl == "aps3" else "4."):
        raise ImportError(f"{sys.executable} has apscheduler {found}")
    return found


def measure(spec: Result) -> Result:
    """Run the measurement ``spec`` describes in this process; clean up after it."""
    impl, what = spec["impl"], spec["what"]
    store, name = spec.get("store", ""), spec.get("name", "")
    n, budget = spec.get("size", 0), spec.get("budget", 30.0)
    if what == "cleanup":
        return asyncio.run(cleanup(spec["names"]))
    try:
        version = _library_version(impl)
    except ImportError as exc:
        return {"unavailable": f"{impl}: {exc}"}
    setup_budget = spec.get("setup_budget", budget)
    factories: dict[tuple[str, str], Callable[[], Coroutine[Any, Any, Result]]] = {
        ("raw", "raw"): lambda: (raw_postgres if store == "postgres" else raw_redis)(
            name, n, spec["connections"]
        ),
        ("horae", "add"): lambda: horae_add(store, name, n, budget, spec["batch"]),
        ("horae", "burst"): lambda: horae_burst(store, name, n, budget),
        ("horae", "setup"): lambda: horae_setup(store, name, n),
        ("horae", "worker"): lambda: horae_worker(store, name, n),
        ("aps3", "add"): lambda: aps3_add(store, name, n, budget),
        ("aps3", "burst"): lambda: aps3_burst(store, name, n, budget, setup_budget),
        ("aps4", "add"): lambda: aps4_add(store, name, n, budget),
        ("aps4", "burst"): lambda: aps4_burst(store, name, n, budget, setup_budget),
        ("aps4", "setup"): lambda: aps4_setup(store, name, n, budget),
        ("aps4", "worker"): lambda: aps4_worker(store, name, n),
    }
    factory = factories[impl, what]
    try:
        result = asyncio.run(factory())
    finally:
        if what not in ("setup", "worker") and name:
            if impl == "aps3":
                _aps3_cleanup(name)
            else:
                asyncio.run(cleanup([name]))
    if "count" in result and "seconds" in result:
        result["rate"] = result["count"] / result["seconds"]
    result["version"] = version
    return result


def _aps3_cleanup(name: str) -> None:
    # APScheduler 3's interpreter may lack asyncpg; psycopg2 and redis are there.
    with contextlib.suppress(FileNotFoundError):
        os.remove(_sqlite_path(name))
    with contextlib.suppress(ImportError, OSError, Exception):
        import sqlalchemy

        url = PG_DSN.replace("postgresql://", "postgresql+psycopg2://", 1)
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        engine.dispose()
    with contextlib.suppress(ImportError, OSError, Exception):
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{name}:*", count=1000))
        if keys:
            client.unlink(*keys)
        client.close()


# ------------------------------------------------------------------------- driver


class Driver:
    """Runs measurements in subprocesses and collects their JSON."""

    def __init__(self, pythons: dict[str, str | None]) -> None:
        self.pythons = pythons
        self.versions: dict[str, str] = {}
        self.names: list[str] = []

    def _python(self, impl: str) -> str | None:
        python = self.pythons.get(impl) or self.pythons.get("horae")
        if python is None or not os.path.exists(python):
            return None
        return python

    def _name(self) -> str:
        name = f"horae_bench_{uuid.uuid4().hex[:10]}"
        self.names.append(name)
        return name

    def _cmd(self, impl: str, spec: Result) -> list[str] | None:
        python = self._python(impl)
        if python is None:
            return None
        return [python, os.path.abspath(__file__), "--spec", json.dumps(spec)]

    def run(
        self, impl: str, what: str, store: str, size: int, budget: float, **extra: Any
    ) -> Result:
        spec = {"impl": impl, "what": what, "store": store, "size": size, "budget": budget}
        spec.update(extra, name=self._name())
        cmd = self._cmd(impl, spec)
        if cmd is None:
            return {"unavailable": f"{impl}: no interpreter"}
        label = f"{impl:<5} {what:<6} {store:<8} {size:>7} {extra.get('batch', '')!s:<5}"
        print(f"  {label} ...", end="", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget * 3 + 60)
        except subprocess.TimeoutExpired:
            print(" timed out", file=sys.stderr)
            return {"error": "timed out"}
        print(f" {time.perf_counter() - started:5.1f} s", file=sys.stderr)
        return self._parse(impl, proc.returncode, proc.stdout, proc.stderr)

    def _parse(self, impl: str, code: int, out: str, err: str) -> Result:
        lines = out.strip().splitlines()
        if code != 0 or not lines:
            tail = (err.strip().splitlines() or ["no output"])[-1]
            return {"error": f"exit {code}: {tail}"}
        result: Result = json.loads(lines[-1])
        if "version" in result:
            self.versions[impl] = result["version"]
        return result

    def shared(
        self, impl: str, store: str, n: int, processes: int, budget: float, setup_budget: float = 60
    ) -> Result:
        """A burst of n due jobs run by ``processes`` scheduler processes sharing a store."""
        name = self._name()
        spec = {"impl": impl, "what": "setup", "store": store, "size": n, "budget": setup_budget}
        spec["name"] = name
        label = f"{impl:<5} shared {store:<8} {n:>7} x{processes}"
        print(f"  {label} ...", end="", file=sys.stderr, flush=True)
        began = time.perf_counter()
        cmd = self._cmd(impl, spec)
        if cmd is None:
            print(" n/a", file=sys.stderr)
            return {"unavailable": f"{impl}: no interpreter"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=setup_budget * 2 + 60)
        setup = self._parse(impl, proc.returncode, proc.stdout, proc.stderr)
        if "count" not in setup:
            print(" setup failed", file=sys.stderr)
            return setup if "error" in setup or "unavailable" in setup else {"error": "setup"}
        spec["what"] = "worker"
        # stderr goes to stdout, which a thread reads all along: a pipe nobody read until
        # the end would stall a worker that logs much once it is full.
        workers = [
            subprocess.Popen(
                [*cmd[:-1], json.dumps(spec)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
            for _ in range(processes)
        ]
        counts = [0] * processes
        finals: list[str | None] = [None] * processes
        ready = [threading.Event() for _ in workers]
        other: list[list[str]] = [[] for _ in workers]  # what else they printed

        def read(i: int) -> None:
            stdout = workers[i].stdout
            assert stdout is not None
            for line in stdout:
                if line.startswith("ready"):
                    ready[i].set()
                elif line.startswith("count "):
                    counts[i] = int(line.split()[1])
                elif line.startswith("{"):
                    finals[i] = line
                elif line.strip():
                    other[i] = [*other[i][-20:], line.rstrip()]
            ready[i].set()  # also when it died before saying so

        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(processes)]
        for reader in readers:
            reader.start()
        try:
            for event in ready:
                event.wait(60)
            go = time.time()
            for worker in workers:
                assert worker.stdin is not None
                worker.stdin.write("go\n")
                worker.stdin.flush()
            # Stop when every run was seen, when nothing moved for 3 s, or out of budget.
            last_total, last_move = -1, time.perf_counter()
            while True:
                time.sleep(0.02)
                total = sum(counts)
                if total != last_total:
                    last_total, last_move = total, time.perf_counter()
                if total >= n or time.perf_counter() - last_move > 3 or time.time() - go > budget:
                    break
            time.sleep(0.2)  # a duplicate would show up in this time
            for worker in workers:
                assert worker.stdin is not None
                with contextlib.suppress(BrokenPipeError):
                    worker.stdin.write("stop\n")
                    worker.stdin.flush()
            for worker in workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(30)
            for reader in readers:
                reader.join(10)
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
        self._cleanup([name], impl)
        print(f" {time.perf_counter() - began:5.1f} s", file=sys.stderr)
        if any(final is None for final in finals):
            tail = other[finals.index(None)] or ["no output"]
            return {"error": f"a worker failed: {tail[-1]}"}
        pairs: Counter[tuple[str, float]] = Counter()
        last = 0.0
        per_process = []
        for final in finals:
            assert final is not None
            data = json.loads(final)
            last = max(last, data["last"])
            per_process.append(sum(c for _, c in data["pairs"]))
            for (job_id, fire), c in data["pairs"]:
                pairs[job_id, fire] += c
        count = sum(pairs.values())
        seconds = max(last - go, 1e-9)
        return {
            "count": count,
            "distinct": len(pairs),
            "dup": sum(c - 1 for c in pairs.values() if c > 1),
            "lost": max(0, n - len(pairs)),
            "seconds": seconds,
            "rate": len(pairs) / seconds,
            "per_process": per_process,
        }

    def _cleanup(self, names: list[str], impl: str = "horae") -> None:
        cmd = self._cmd("horae", {"impl": impl, "what": "cleanup", "names": names})
        if cmd is not None:
            subprocess.run(cmd, capture_output=True, timeout=120)


def _add_cell(r: Result, want: int) -> str:
    if "unavailable" in r:
        return "n/a"
    if "skipped" in r:
        return r["skipped"]
    if "error" in r:
        return "error"
    text = f"{r['rate']:,.0f}"
    if r["count"] < want:
        text += f" ({r['count']:,} in {r['seconds']:.0f}s)"
    return text


def _burst_cell(r: Result, want: int) -> str:
    if "unavailable" in r:
        return "n/a"
    if "skipped" in r:
        return r["skipped"]
    if "error" in r:
        return "error"
    runs = r["distinct"]
    text = f"{runs / r['seconds']:,.0f}"
    if runs < want:
        text += f" ({runs:,} in {r['seconds']:.0f}s)"
    return (
        f"{text} [dup {r['dup']}, lost {r['lost']}]" if runs >= want else f"{text} [dup {r['dup']}]"
    )


def _out_of_budget(r: Result, want: int) -> bool:
    if "error" in r or "unavailable" in r or "skipped" in r:
        return True
    return r.get("count", r.get("distinct", 0)) < want


def _table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    print(title)
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print()


def drive(args: argparse.Namespace) -> None:
    pythons: dict[str, str | None] = {
        "horae": args.horae_python,
        "raw": args.horae_python,
        "aps3": args.aps3_python,
        "aps4": args.aps4_python,
    }
    driver = Driver(pythons)
    sizes = SIZES[:2] if args.quick else SIZES
    budget, rival = args.budget, args.rival_budget
    add_budget, rival_setup = min(budget, args.add_budget), args.rival_setup_budget
    problems: dict[str, str] = {}

    command = [sys.executable, "benchmarks/stores.py"]
    for flag, value in (
        ("--horae-python", args.horae_python),
        ("--aps3-python", args.aps3_python),
        ("--aps4-python", args.aps4_python),
    ):
        if value and value != sys.executable:
            command += [flag, value]
    if args.quick:
        command.append("--quick")
    print("measuring (each line one subprocess):", file=sys.stderr)
    wall = time.perf_counter()

    def note(key: str, r: Result) -> Result:
        if "error" in r or "unavailable" in r:
            problems[key] = r.get("error") or r["unavailable"]
        return r

    def best(key: str, runs: int, measure: Callable[[], Result]) -> Result:
        """The fastest of ``runs`` runs; duplicates and losses of any run are kept."""
        results = [note(key, measure()) for _ in range(runs)]
        good = [r for r in results if "rate" in r]
        if not good:
            return results[0]
        top = dict(max(good, key=lambda r: r["rate"]))
        for field in ("dup", "lost"):
            if field in top:
                top[field] = max(r.get(field, 0) for r in results)
        return top

    def sized(key: str, impl: str, what: str, store: str, size: int, smaller: Result | None,
              b: float, **extra: Any) -> Result:  # fmt: skip
        """A run at ``size``, skipped when the run at a tenth of it ran out of budget."""
        if smaller is not None and _out_of_budget(smaller, size // 10):
            return {"skipped": f"skipped ({size // 10 // 1000}k ran out)"}
        return note(key, driver.run(impl, what, store, size, b, **extra))

    def rival_burst(key: str, impl: str, store: str, size: int, add: Result) -> Result:
        """A competitor's burst, skipped when adding its jobs would take too long."""
        if "rate" not in add:
            return {"skipped": "skipped (no add rate)"}
        setup = size / add["rate"]
        if setup > rival_setup:
            return {"skipped": f"skipped (set-up ~{setup:.0f} s)"}
        return note(key, driver.run(impl, "burst", store, size, rival, setup_budget=rival_setup))

    # horae: adds and bursts on every store
    horae_stores = ("memory", "sqlite", "postgres", "redis")
    h_add: dict[tuple[str, int, bool], Result] = {}
    h_burst: dict[tuple[str, int], Result] = {}
    for store in horae_stores:
        for batch in (False, True):
            prev = None
            for size in sizes:
                prev = h_add[store, size, batch] = sized(
                    f"horae add {store} {size} batch={batch}", "horae", "add", store, size,
                    prev, budget if batch else add_budget, batch=batch,
                )  # fmt: skip
        for size in sizes:
            h_burst[store, size] = best(
                f"horae burst {store} {size}",
                2 if size <= SHARED_SIZE else 1,
                lambda store=store, size=size: driver.run("horae", "burst", store, size, budget),
            )

    # APScheduler 3 and 4
    aps3_stores = ("sqlite", "postgres", "redis")
    a3_add: dict[tuple[str, int], Result] = {}
    a3_burst: dict[tuple[str, int], Result] = {}
    for store in aps3_stores:
        prev = None
        for size in sizes:
            prev = a3_add[store, size] = sized(
                f"aps3 add {store} {size}", "aps3", "add", store, size, prev, rival
            )
        for size in sizes:
            add = a3_add[store, min(size, SHARED_SIZE)]
            a3_burst[store, size] = rival_burst(
                f"aps3 burst {store} {size}", "aps3", store, size, add
            )
    a4_add: dict[int, Result] = {}
    a4_burst: dict[int, Result] = {}
    prev = None
    for size in sizes:
        prev = a4_add[size] = sized(
            f"aps4 add {size}", "aps4", "add", "postgres", size, prev, rival
        )
    for size in sizes:
        add = a4_add[min(size, SHARED_SIZE)]
        a4_burst[size] = rival_burst(f"aps4 burst {size}", "aps4", "postgres", size, add)

    # several processes sharing one store
    shared: dict[tuple[str, str, int], Result] = {}
    for store in ("postgres", "redis"):
        for procs in PROCESSES:
            shared["horae", store, procs] = best(
                f"horae shared {store} x{procs}",
                2,
                lambda store=store, procs=procs: driver.shared(
                    "horae", store, SHARED_SIZE, procs, budget
                ),
            )
    for procs in PROCESSES:
        shared["aps4", "postgres", procs] = note(
            f"aps4 shared x{procs}",
            driver.shared("aps4", "postgres", APS4_SHARED_SIZE, procs, rival, rival_setup),
        )

    # raw limits
    raw: dict[tuple[str, int], Result] = {}
    for store in ("postgres", "redis"):
        for conns in (1, 2):
            raw[store, conns] = best(
                f"raw {store} x{conns}",
                2,
                lambda store=store, conns=conns: driver.run(
                    "raw", "raw", store, RAW_ROWS, budget, connections=conns
                ),
            )

    # profiles of the burst paths, after the figures (so they do not disturb them)
    if args.profile_dir:
        os.makedirs(args.profile_dir, exist_ok=True)
        for store in ("postgres", "redis"):
            for suffix in ("txt", "prof"):
                path = os.path.join(args.profile_dir, f"{store}-burst-{SHARED_SIZE}.{suffix}")
                driver.run("horae", "burst", store, SHARED_SIZE, budget, profile=path)
                print(f"  profile: {path}", file=sys.stderr)
    driver._cleanup(driver.names)
    elapsed = time.perf_counter() - wall

    # ------------------------------------------------------------------ the tables
    v = driver.versions
    print()
    print("horae store benchmark")
    print(f"reproduce: {shlex.join(command)}")
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {datetime.now():%Y-%m-%d %H:%M}; "
        f"horae {v.get('horae', '?')}, APScheduler {v.get('aps3', '3 n/a')} and "
        f"{v.get('aps4', '4 n/a')}; the run took {elapsed:.0f} s"
    )
    print()

    def k(size: int) -> str:
        return f"{size // 1000}k"

    add_rows: list[list[str]] = []
    target_add = ">= 5,000 (pg)"
    for store in horae_stores:
        for size in sizes:
            add_rows.append(
                [f"horae {store}", k(size),
                 _add_cell(h_add[store, size, False], size),
                 _add_cell(h_add[store, size, True], size),
                 target_add if store == "postgres" else ""]
            )  # fmt: skip
    for store in aps3_stores:
        label = {"sqlite": "SQLAlchemy/SQLite", "postgres": "SQLAlchemy/PG", "redis": "Redis"}
        for size in sizes:
            add_rows.append(
                [f"APS 3 {label[store]}", k(size), _add_cell(a3_add[store, size], size), "-", ""]
            )
    for size in sizes:
        add_rows.append(
            ["APS 4 SQLAlchemy/asyncpg", k(size), _add_cell(a4_add[size], size), "-",
             "ref ~420" if size == 1000 else ""]
        )  # fmt: skip
    _table(
        "Adding jobs (jobs/s): add_job one by one on a started scheduler; "
        f"scheduler.add_jobs with {BATCH:,} jobs a call",
        ["store", "jobs", "add_job", "add_jobs batch", "target"],
        add_rows,
    )

    burst_rows: list[list[str]] = []
    burst_target = {
        "postgres": ">= 10,000 at 10k",
        "redis": ">= postgres",
        "sqlite": ">= 2,000",
        "memory": "",
    }
    for store in horae_stores:
        for size in sizes:
            burst_rows.append(
                [f"horae {store}", k(size), _burst_cell(h_burst[store, size], size),
                 burst_target[store] if size == SHARED_SIZE else ""]
            )  # fmt: skip
    for store in aps3_stores:
        label = {"sqlite": "SQLAlchemy/SQLite", "postgres": "SQLAlchemy/PG", "redis": "Redis"}
        for size in sizes:
            burst_rows.append(
                [f"APS 3 {label[store]}", k(size), _burst_cell(a3_burst[store, size], size), ""]
            )
    for size in sizes:
        burst_rows.append(
            ["APS 4 SQLAlchemy/asyncpg", k(size), _burst_cell(a4_burst[size], size),
             "ref ~120" if size == 1000 else ""]
        )  # fmt: skip
    _table(
        "Burst: n due no-op jobs acquired and run by one scheduler (runs/s) "
        "[duplicate and lost (job, fire time) pairs]",
        ["store", "jobs", "runs/s", "target"],
        burst_rows,
    )

    shared_rows: list[list[str]] = []
    for impl, store, size in (
        ("horae", "postgres", SHARED_SIZE),
        ("horae", "redis", SHARED_SIZE),
        ("aps4", "postgres", APS4_SHARED_SIZE),
    ):
        for k_ in PROCESSES:
            r = shared[impl, store, k_]
            target = ""
            if impl == "horae" and store == "postgres":
                target = ">= 10,000" if k_ == 1 else "> 1 process"
            elif impl == "horae":
                target = ">= postgres"
            split = " / ".join(f"{c:,}" for c in r.get("per_process", []))
            shared_rows.append(
                [f"{'horae' if impl == 'horae' else 'APS 4'} {store}", k(size), str(k_),
                 _burst_cell(r, size), split, target]
            )  # fmt: skip
    _table(
        "Burst shared by scheduler processes (total runs/s) "
        "[duplicate and lost (job, fire time) pairs across processes]",
        ["store", "jobs", "procs", "runs/s", "runs per process", "target"],
        shared_rows,
    )

    raw_rows = [
        [
            "asyncpg UPDATE .. FROM (SELECT .. FOR UPDATE SKIP LOCKED LIMIT 100) RETURNING",
            str(c),
            _add_cell(raw["postgres", c], RAW_ROWS),
            "ref ~118,000" if c == 1 else "ref ~150,000",
        ]
        for c in (1, 2)
    ] + [
        ["Redis Lua ZRANGEBYSCORE + ZREM, 100 per call", str(c),
         _add_cell(raw["redis", c], RAW_ROWS), ""]
        for c in (1, 2)
    ]  # fmt: skip
    _table(
        f"Raw limits: acquiring {RAW_ROWS // 1000}k due rows in batches of 100 (rows/s)",
        ["loop", "connections", "rows/s", "reference"],
        raw_rows,
    )
    print(
        f"Budgets: horae {budget:.0f} s per run ({add_budget:.0f} s for add_job one by one), "
        f"APScheduler {rival:.0f} s per run and {rival_setup:.0f} s to set up a burst (a burst "
        "whose set-up would take longer, judged by that library's add rate, is skipped); "
        "'(n in s)' is what a run managed in its budget. horae's 1k/10k bursts, the shared "
        "rows and the raw loops are the best of 2 runs (duplicates and losses of either "
        f"are shown). APScheduler 4 shares its store (asyncpg event broker) at "
        f"{k(APS4_SHARED_SIZE)} jobs; APScheduler 3 cannot share a job store."
    )
    for key, why in problems.items():
        print(f"  {key}: {why}")


def main() -> None:
    global _profile_path
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--horae-python", default=os.environ.get("HORAE_BENCH_PYTHON", sys.executable)
    )
    parser.add_argument(
        "--aps3-python", default=os.environ.get("HORAE_BENCH_APS3_PYTHON", sys.executable)
    )
    parser.add_argument("--aps4-python", default=os.environ.get("HORAE_BENCH_APS4_PYTHON"))
    parser.add_argument("--budget", type=float, default=20.0, help="seconds per horae run")
    parser.add_argument(
        "--add-budget", type=float, default=8.0, help="seconds per horae one-by-one add run"
    )
    parser.add_argument("--rival-budget", type=float, default=6.0, help="seconds per APS run")
    parser.add_argument(
        "--rival-setup-budget", type=float, default=15.0, help="seconds to set up an APS burst"
    )
    parser.add_argument("--quick", action="store_true", help="1k and 10k only")
    parser.add_argument("--profile-dir", help="also profile the pg/redis bursts into this dir")
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spec:
        spec = json.loads(args.spec)
        _profile_path = spec.get("profile")
        print(json.dumps(measure(spec)), flush=True)
    else:
        drive(args)


if __name__ == "__main__":
    main()
