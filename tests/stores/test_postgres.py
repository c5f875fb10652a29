"""What only the PostgreSQL store does: schemas, pools, concurrent acquisition, NOTIFY."""

from __future__ import annotations

import functools
import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest

from horae import JobArgumentError, Run, RunOutcome, StoreError
from horae.events import JobAdded
from horae.stores._codec import encode_job
from horae.stores._postgres_sql import CURRENT_VERSION, Statements
from horae.stores.base import SCHEDULER_RECORD_KEEP, Release, StoreContext
from horae.stores.postgres import PostgresStore
from tests.services import POSTGRES_DSN

from .helpers import at, make_job, scheduler_info
from .target_postgres import connect, fresh_schema

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # asyncpg runs on asyncio only


class Wakeups:
    """A StoreContext whose wake-ups can be awaited."""

    def __init__(self, scheduler_id: str) -> None:
        self.count = 0
        self.event = anyio.Event()
        self.context = StoreContext(
            scheduler_id=scheduler_id, wakeup=self._wake, publish=lambda event: None
        )

    def _wake(self) -> None:
        self.count += 1
        self.event.set()

    async def wait(self, seconds: float = 5) -> None:
        with anyio.fail_after(seconds):
            await self.event.wait()
        self.event = anyio.Event()


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    async with fresh_schema() as name:
        yield name


@pytest.fixture
async def open_store(schema: str) -> AsyncIterator[Callable[..., Any]]:
    """Starts stores on the test's schema; stops them all at the end."""
    started: list[PostgresStore] = []

    async def open_(scheduler_id: str = "test", context: StoreContext | None = None) -> Any:
        store = PostgresStore(POSTGRES_DSN, schema=schema)
        await store.start(context or Wakeups(scheduler_id).context)
        started.append(store)
        return store

    yield open_
    for store in started:
        await store.stop()


@pytest.mark.parametrize(
    "name",
    ['horae"; DROP SCHEMA public; --', "1starts_with_digit", "", "a" * 64, "has space", "dé"],
)
def test_invalid_schema_names_are_refused(name: str) -> None:
    with pytest.raises(JobArgumentError, match="schema"):
        PostgresStore(POSTGRES_DSN, schema=name)


def test_invalid_arguments_are_refused() -> None:
    with pytest.raises(JobArgumentError, match="dsn_or_pool"):
        PostgresStore(42)
    with pytest.raises(JobArgumentError, match="run_retention"):
        PostgresStore(POSTGRES_DSN, run_retention=-1)
    with pytest.raises(JobArgumentError, match="serializer"):
        PostgresStore(POSTGRES_DSN, serializer="json")  # type: ignore[arg-type]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_is_refused_with_a_clear_error(anyio_backend: str) -> None:
    store = PostgresStore(POSTGRES_DSN, schema="unused")
    with pytest.raises(StoreError, match="asyncio only"):
        await store.start(Wakeups("t").context)


async def test_schemas_are_isolated(open_store: Callable[..., Any]) -> None:
    async with fresh_schema() as other_schema:
        other = PostgresStore(POSTGRES_DSN, schema=other_schema)
        await other.start(Wakeups("other").context)
        try:
            store = await open_store()
            await store.add_jobs([make_job("a", 1)], replace=False)
            await other.add_jobs([make_job("b", 2)], replace=False)
            assert [j.id for j in await store.get_jobs()] == ["a"]
            assert [j.id for j in await other.get_jobs()] == ["b"]
            assert await other.acquire_jobs("s", at(10), 10, 30) != []
            assert [lease.job_id for lease in await store.acquire_jobs("s", at(10), 10, 30)] == [
                "a"
            ]
        finally:
            await other.stop()


async def test_schema_version_row_and_newer_layouts_refused(
    schema: str, open_store: Callable[..., Any]
) -> None:
    await open_store()
    await open_store()  # a second start on existing tables changes nothing
    conn = await connect()
    try:
        rows = await conn.fetch(f'SELECT version FROM "{schema}".schema_version')
        assert [r["version"] for r in rows] == [CURRENT_VERSION]
        await conn.execute(f'UPDATE "{schema}".schema_version SET version = 999')
    finally:
        await conn.close()
    newer = PostgresStore(POSTGRES_DSN, schema=schema)
    with pytest.raises(StoreError, match="newer"):
        await newer.start(Wakeups("x").context)
    assert newer.pool is None


async def test_concurrent_starts_create_the_tables_once(schema: str) -> None:
    stores = [PostgresStore(POSTGRES_DSN, schema=schema) for _ in range(5)]
    try:
        async with anyio.create_task_group() as tg:
            for i, store in enumerate(stores):
                tg.start_soon(store.start, Wakeups(f"s{i}").context)
        await stores[0].add_jobs([make_job("a", 1)], replace=False)
        assert [j.id for j in await stores[4].get_jobs()] == ["a"]
    finally:
        for store in stores:
            await store.stop()


async def test_a_given_pool_is_used_and_left_open(schema: str) -> None:
    import asyncpg

    pool = await asyncpg.create_pool(POSTGRES_DSN, min_size=1, max_size=3)
    try:
        store = PostgresStore(pool, schema=schema)
        await store.start(Wakeups("p").context)
        assert store.pool is pool
        await store.add_jobs([make_job("a", 1)], replace=False)
        await store.stop()
        assert not pool.is_closing()
        assert await pool.fetchval(f'SELECT count(*) FROM "{schema}".jobs') == 1
    finally:
        await pool.close()


async def test_a_pool_too_small_to_listen_is_refused(schema: str) -> None:
    import asyncpg

    pool = await asyncpg.create_pool(POSTGRES_DSN, min_size=1, max_size=1)
    try:
        store = PostgresStore(pool, schema=schema)
        with pytest.raises(StoreError, match="max_size >= 2"):
            await store.start(Wakeups("p").context)
    finally:
        await pool.close()


async def test_concurrent_finishes_are_all_recorded_and_trimmed(schema: str) -> None:
    store = PostgresStore(POSTGRES_DSN, schema=schema, run_retention=3)
    await store.start(Wakeups("f").context)
    try:
        await store.add_jobs([make_job(f"j{i}", 0) for i in range(20)], replace=False)
        leases = await store.acquire_jobs("f", at(0), 100, 30)
        started = {
            lease.job_id: [Run(job_id=lease.job_id, scheduled_time=at(-k)) for k in range(5)]
            for lease in leases
        }
        await store.release_jobs(
            "f",
            [
                Release(lease=lease, next_run_time=at(10), started=started[lease.job_id])
                for lease in leases
            ],
        )
        assert len(await store.get_runs("j0")) == 5  # all in flight

        async def finish(run: Run) -> None:
            await store.finish_run(
                attrs.evolve(run, finished_at=at(1), outcome=RunOutcome.SUCCESS, result=7)
            )

        async with anyio.create_task_group() as tg:
            for k in range(5):
                for runs in started.values():
                    tg.start_soon(finish, runs[k])
        for job_id in started:
            runs = await store.get_runs(job_id)
            # The last three to finish, newest first.
            assert [r.scheduled_time for r in runs] == [at(-4), at(-3), at(-2)]
            assert {(r.outcome, r.result) for r in runs} == {(RunOutcome.SUCCESS, 7)}
        leases = await store.acquire_jobs("f", at(10), 100, 30)
        assert {lease.running for lease in leases} == {0}
    finally:
        await store.stop()


async def test_two_concurrent_acquirers_get_disjoint_jobs(
    open_store: Callable[..., Any],
) -> None:
    first = await open_store("a")
    second = await open_store("b")
    await first.add_jobs([make_job(f"j{i}", i % 7) for i in range(600)], replace=False)
    taken: dict[str, list[str]] = {"a": [], "b": []}

    async def drain(store: PostgresStore, name: str) -> None:
        while leases := await store.acquire_jobs(name, at(10), 25, 30):
            taken[name].extend(lease.job_id for lease in leases)

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain, first, "a")
        tg.start_soon(drain, second, "b")
    everything = taken["a"] + taken["b"]
    assert len(everything) == 600
    assert len(set(everything)) == 600
    assert taken["a"]
    assert taken["b"]


async def test_notify_wakes_another_store_not_itself(open_store: Callable[..., Any]) -> None:
    mine = Wakeups("mine")
    store = await open_store(context=mine.context)
    theirs = Wakeups("theirs")
    other = await open_store(context=theirs.context)
    await store.add_jobs([make_job("a", 1)], replace=False)  # only `other` hears this
    await other.update_job(make_job("a", 5))  # only `store` hears this
    await mine.wait()
    await theirs.wait()
    assert mine.count == 1
    assert theirs.count == 1
    # A release that brings a job forward (before its lease expiry) wakes the others.
    (lease,) = await store.acquire_jobs("mine", at(5), 10, 30)
    await store.release_jobs("mine", [Release(lease=lease, next_run_time=at(15))])
    await theirs.wait()
    await other.remove_job("a")
    await mine.wait()


async def test_lost_listener_is_logged_once_and_comes_back(
    open_store: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "horae.stores.postgres")
    mine = Wakeups("mine")
    store = await open_store(context=mine.context)
    other = await open_store("other")
    listener = store._listener
    terminated = anyio.Event()
    # Registered after the store's own: called after it.
    listener.add_termination_listener(lambda conn: terminated.set())
    conn = await connect()
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())
    finally:
        await conn.close()
    with anyio.fail_after(5):
        await terminated.wait()
    assert store._listener_lost
    # The store still works; its next call brings the listener back (and wakes, since
    # notifications may have been missed meanwhile).
    await other.add_jobs([make_job("a", 1)], replace=False)
    assert await store.next_run_time() == at(1)
    await mine.wait()
    await other.add_jobs([make_job("b", 2)], replace=False)
    await mine.wait()
    lost = [r for r in caplog.records if "LISTEN connection was lost" in r.getMessage()]
    assert len(lost) == 1


async def test_stop_gives_back_held_leases(open_store: Callable[..., Any]) -> None:
    store = await open_store("holder")
    await store.add_jobs([make_job("a", 1)], replace=False)
    assert len(await store.acquire_jobs("holder", at(1), 10, 30)) == 1
    await store.stop()
    other = await open_store("next")
    assert [lease.job_id for lease in await other.acquire_jobs("next", at(1), 10, 30)] == ["a"]


async def test_run_retention_trims_finished_runs(schema: str) -> None:
    store = PostgresStore(POSTGRES_DSN, schema=schema, run_retention=2)
    await store.start(Wakeups("r").context)
    try:
        await store.add_jobs([make_job("h", 0)], replace=False)
        for i in range(5):
            await store.finish_run(
                Run(job_id="h", scheduled_time=at(i), finished_at=at(i), outcome=RunOutcome.SUCCESS)
            )
        assert [r.scheduled_time for r in await store.get_runs("h")] == [at(4), at(3)]
        # Runs finished at release time (missed, skipped) are trimmed too.
        (lease,) = await store.acquire_jobs("r", at(10), 10, 30)
        missed = [
            Run(job_id="h", scheduled_time=at(t), finished_at=at(10), outcome=RunOutcome.MISSED)
            for t in (5, 6, 7)
        ]
        started = Run(job_id="h", scheduled_time=at(10))
        await store.release_jobs(
            "r", [Release(lease=lease, next_run_time=at(20), started=[started], finished=missed)]
        )
        assert [r.scheduled_time for r in await store.get_runs("h")] == [at(10), at(7), at(6)]
    finally:
        await store.stop()


async def test_expired_lease_of_a_paused_job_is_not_handed_out(
    open_store: Callable[..., Any],
) -> None:
    store = await open_store()
    await store.add_jobs([make_job("p", 1)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(1), 10, 5)
    assert lease.job is not None
    await store.update_job(make_job("p", None))  # paused while leased; s1 never releases
    assert await store.acquire_jobs("s2", at(10), 10, 5) == []
    assert (await store.get_job("p")).next_run_time is None
    assert await store.next_run_time() is None


# ------------------------------------------------------------- run leases (layout 2)


async def _v1_schema(schema: str) -> None:
    """Create ``schema`` as horae with layout version 1 left it, with one run in flight."""
    sql = Statements.for_schema(schema)
    conn = await connect()
    try:
        await conn.execute(sql.prepare)
        await conn.execute(sql.migrations[1])
        await conn.execute(sql.set_version, 1)
        await conn.execute(
            f'INSERT INTO "{schema}".running (id, job_id, scheduled_time, scheduler_id, '
            "attempt, coalesced) VALUES ($1, 'a', $2, 'old', 1, 0)",
            _LEFT_BEHIND.id,
            _LEFT_BEHIND.scheduled_time,
        )
    finally:
        await conn.close()


_LEFT_BEHIND = Run(job_id="a", scheduled_time=at(5), scheduler_id="old")


async def test_a_version_1_schema_is_upgraded(schema: str, open_store: Callable[..., Any]) -> None:
    await _v1_schema(schema)
    store = await open_store("new")
    conn = await connect()
    try:
        assert (
            await conn.fetchval(f'SELECT version FROM "{schema}".schema_version') == CURRENT_VERSION
        )
        # A process of version 1 still running inserts runs without the new columns:
        # they never expire (they are not taken over while it runs them).
        await conn.execute(
            f'INSERT INTO "{schema}".running (id, job_id, scheduled_time, scheduler_id, '
            "attempt, coalesced) VALUES ($1, 'a', $2, 'old', 1, 0)",
            uuid.uuid4(),
            at(6),
        )
    finally:
        await conn.close()
    # The run left in flight before the upgrade is expired: claimable at once.
    (claimed,) = await store.claim_expired_runs("new", at(0), limit=10, lease_duration=30)
    assert claimed == _LEFT_BEHIND
    # The one inserted by the old process is not, however late.
    later = await store.claim_expired_runs("new", at(10**8), limit=10, lease_duration=30)
    assert [r.id for r in later] == [_LEFT_BEHIND.id]
    await store.finish_run(attrs.evolve(claimed, outcome=RunOutcome.ABANDONED, finished_at=at(1)))
    assert [r.outcome for r in await store.get_runs("a")] == [None, RunOutcome.ABANDONED]


async def test_claiming_uses_the_expiry_index(schema: str, open_store: Callable[..., Any]) -> None:
    await open_store()
    conn = await connect()
    try:
        await conn.execute("SET enable_seqscan = off")
        rows = await conn.fetch(
            "EXPLAIN " + Statements.for_schema(schema).claim_runs, "s", at(0), 10, at(30)
        )
    finally:
        await conn.close()
    assert "running_expires_at" in "\n".join(row[0] for row in rows)


async def test_concurrent_claimers_take_each_run_once(open_store: Callable[..., Any]) -> None:
    stores = [await open_store(f"c{i}") for i in range(4)]
    await stores[0].add_jobs([make_job(f"j{i}", 0) for i in range(50)], replace=False)
    leases = await stores[0].acquire_jobs("dead", at(0), 100, 5)
    started = [
        Run(job_id=lease.job_id, scheduled_time=at(-k)) for lease in leases for k in range(4)
    ]
    await stores[0].release_jobs(
        "dead",
        [
            Release(
                lease=lease,
                next_run_time=None,
                started=[r for r in started if r.job_id == lease.job_id],
            )
            for lease in leases
        ],
    )
    taken: dict[str, list[Run]] = {}

    async def claim(store: PostgresStore, name: str) -> None:
        taken[name] = []
        while runs := await store.claim_expired_runs(name, at(10), 7, 60):
            taken[name].extend(runs)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg:
        for i, store in enumerate(stores):
            tg.start_soon(claim, store, f"c{i}")
    everything = [run.id for runs in taken.values() for run in runs]
    assert len(everything) == len(set(everything)) == len(started) == 200
    # Each run is renewable by the one that claimed it, and by nobody else.
    for name, runs in taken.items():
        ids = [run.id for run in runs]
        assert await stores[0].extend_runs(name, ids, at(100)) == set()
        assert await stores[0].extend_runs("dead", ids, at(100)) == set(ids)


async def test_two_finishes_of_a_run_put_one_retry_in_flight(
    open_store: Callable[..., Any],
) -> None:
    stores = [await open_store("s1"), await open_store("s2")]
    await stores[0].add_jobs([make_job(f"j{i}", 0) for i in range(30)], replace=False)
    leases = await stores[0].acquire_jobs("s1", at(0), 100, 5)
    runs = [Run(job_id=lease.job_id, scheduled_time=at(0), scheduler_id="s1") for lease in leases]
    await stores[0].release_jobs(
        "s1",
        [
            Release(lease=lease, next_run_time=None, started=[run])
            for lease, run in zip(leases, runs, strict=True)
        ],
    )

    async def finish(store: PostgresStore, run: Run, name: str, outcome: RunOutcome) -> None:
        retry = Run(job_id=run.job_id, scheduled_time=run.scheduled_time, scheduler_id=name)
        await store.finish_run(
            attrs.evolve(run, outcome=outcome, finished_at=at(1)), retry=retry, expires_at=at(50)
        )

    # Each run is finished twice at once: by its scheduler (in a batch of its store),
    # and as abandoned by another process that claimed it (in another store's batch);
    # the two statements race for the row.
    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(finish, stores[0], run, "s1", RunOutcome.ERROR)
            tg.start_soon(finish, stores[1], run, "s2", RunOutcome.ABANDONED)
    for run in runs:
        history = await stores[0].get_runs(run.job_id)
        assert [r.outcome for r in history] == [None, history[1].outcome]
        # The retry in flight is that of the finish whose record stayed.
        retry, recorded = history
        expected = "s1" if recorded.outcome is RunOutcome.ERROR else "s2"
        assert retry.scheduler_id == expected
    for lease in await stores[0].acquire_jobs("s1", at(1), 100, 5):
        assert lease.running == 1


async def test_a_run_finished_twice_in_one_batch_counts_once(
    open_store: Callable[..., Any],
) -> None:
    store = await open_store("s1")
    await store.add_jobs([make_job("a", 0)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(0), 10, 5)
    run = Run(job_id="a", scheduled_time=at(0), scheduler_id="s1")
    await store.release_jobs("s1", [Release(lease=lease, next_run_time=None, started=[run])])
    first = Run(job_id="a", scheduled_time=at(0), scheduler_id="s1", attempt=2)
    second = Run(job_id="a", scheduled_time=at(0), scheduler_id="s2", attempt=2)
    ended = attrs.evolve(run, outcome=RunOutcome.ERROR, finished_at=at(1))
    async with anyio.create_task_group() as tg:
        # The two finishes of `run` land in one batch (while `other` is written): the
        # first of them counts, the second is a late duplicate and its retry ignored.
        other = Run(job_id="a", scheduled_time=at(-1), outcome=RunOutcome.SUCCESS)
        tg.start_soon(store.finish_run, other)
        await anyio.lowlevel.checkpoint()
        tg.start_soon(functools.partial(store.finish_run, ended, retry=first, expires_at=at(9)))
        tg.start_soon(
            functools.partial(
                store.finish_run,
                attrs.evolve(ended, outcome=RunOutcome.ABANDONED),
                retry=second,
                expires_at=at(9),
            )
        )
    assert [(r.id, r.outcome) for r in await store.get_runs("a")] == [
        (first.id, None),
        (run.id, RunOutcome.ERROR),
        (other.id, RunOutcome.SUCCESS),
    ]


async def test_a_retry_is_put_in_flight_without_run_retention(schema: str) -> None:
    store = PostgresStore(POSTGRES_DSN, schema=schema, run_retention=0)
    await store.start(Wakeups("s1").context)
    try:
        await store.add_jobs([make_job("a", 0)], replace=False)
        (lease,) = await store.acquire_jobs("s1", at(0), 10, 5)
        run = Run(job_id="a", scheduled_time=at(0), scheduler_id="s1")
        await store.release_jobs("s1", [Release(lease=lease, next_run_time=None, started=[run])])
        retry = Run(job_id="a", scheduled_time=at(0), scheduler_id="s1", attempt=2)
        ended = attrs.evolve(run, outcome=RunOutcome.ERROR, finished_at=at(1))
        await store.finish_run(ended, retry=retry, expires_at=at(30))
        assert [r.id for r in await store.get_runs("a")] == [retry.id]
        # Not in flight any more: a second finish changes nothing.
        await store.finish_run(ended, retry=attrs.evolve(retry, attempt=3), expires_at=at(30))
        assert [r.id for r in await store.get_runs("a")] == [retry.id]
        assert await store.claim_expired_runs("s2", at(29), 10, 30) == []
        assert [r.id for r in await store.claim_expired_runs("s2", at(30), 10, 30)] == [retry.id]
    finally:
        await store.stop()


async def test_a_retry_needs_an_expiry(open_store: Callable[..., Any]) -> None:
    store = await open_store()
    run = Run(job_id="a", scheduled_time=at(0), outcome=RunOutcome.ERROR)
    with pytest.raises(JobArgumentError, match="expires_at"):
        await store.finish_run(run, retry=Run(job_id="a", scheduled_time=at(0), attempt=2))


# -------------------------------------------------- holds and run counts (layout 3)


async def _held(schema: str, job_id: str) -> bool:
    """Whether the job's row says held: a next run time, no lease, not due."""
    conn = await connect()
    try:
        return bool(
            await conn.fetchval(
                f"SELECT next_run_time IS NOT NULL AND due_at IS NULL AND lease_holder IS NULL "
                f'FROM "{schema}".jobs WHERE id = $1',
                job_id,
            )
        )
    finally:
        await conn.close()


async def _one_run_in_flight(store: PostgresStore, job_id: str) -> tuple[Run, Any]:
    """Add ``job_id``, start one run of it, and lease it again (due at 1 then 2)."""
    await store.add_jobs([make_job(job_id, 1)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(1), 10, 30)
    run = Run(job_id=job_id, scheduled_time=at(1), scheduler_id="s1")
    await store.release_jobs("s1", [Release(lease=lease, next_run_time=at(2), started=[run])])
    (lease,) = await store.acquire_jobs("s1", at(2), 10, 30)
    assert lease.running == 1
    return run, lease


async def _blocked_by(pid: int) -> None:
    """Wait (up to 5 s) until some backend waits for a lock that backend ``pid`` holds."""
    conn = await connect()
    try:
        for _ in range(1000):
            if await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                pid,
            ):
                return
            await anyio.sleep(0.005)
    finally:
        await conn.close()
    pytest.fail(f"nothing waited for backend {pid} within 5 s")


@pytest.mark.parametrize("with_retry", [False, True], ids=["finish", "retry"])
async def test_a_finish_that_began_before_the_hold_committed_frees_the_job(
    schema: str, open_store: Callable[..., Any], with_retry: bool
) -> None:
    # The interleaving a plain count of the runs in flight gets wrong: the hold counts the
    # run, and the finish of that run took its snapshot before the hold committed, so
    # its snapshot shows the job not held. Here the hold's transaction is kept open
    # until the finish waits for it.
    mine = Wakeups("s1")
    releaser = await open_store(context=mine.context)
    finisher = await open_store("s2")
    run, lease = await _one_run_in_flight(releaser, "a")
    ended = attrs.evolve(run, outcome=RunOutcome.ERROR, finished_at=at(3))
    retry = Run(job_id="a", scheduled_time=at(1), scheduler_id="s2", attempt=2)
    finish = functools.partial(finisher.finish_run, ended)
    if with_retry:
        finish = functools.partial(finish, retry=retry, expires_at=at(50))
    hold = Release(lease=lease, next_run_time=at(20), hold_while_running=1)
    statement, args = releaser._release_statement("s1", [hold])
    conn = await connect()
    try:
        transaction = conn.transaction()
        await transaction.start()
        assert (await conn.fetchrow(statement, *args))["accepted"] == ["a"]
        async with anyio.create_task_group() as tg:
            tg.start_soon(finish)
            await _blocked_by(conn.get_server_pid())
            await transaction.commit()
    finally:
        await conn.close()
    if with_retry:
        # The retry keeps the job held (it inherits its run's mark), and its end frees it.
        assert await _held(schema, "a")
        claimed = await finisher.claim_expired_runs("s3", at(50), 10, 30)
        assert [r.id for r in claimed] == [retry.id]
        assert await releaser.next_run_time() is None
        await finisher.finish_run(
            attrs.evolve(retry, outcome=RunOutcome.SUCCESS, finished_at=at(9))
        )
    assert not await _held(schema, "a")
    await mine.wait()  # the other scheduler was told
    (again,) = await releaser.acquire_jobs("s1", at(20), 10, 30)
    assert (again.job_id, again.running, again.run_count) == ("a", 0, 1)


async def test_a_hold_does_not_count_a_run_being_finished(
    schema: str, open_store: Callable[..., Any]
) -> None:
    store = await open_store("s1")
    run, lease = await _one_run_in_flight(store, "a")
    conn = await connect()
    try:
        # A finish of the run, under way: its row is deleted but not committed yet. The
        # hold neither waits for it nor counts it.
        async with conn.transaction():
            await conn.execute(f'DELETE FROM "{schema}".running WHERE id = $1', run.id)
            hold = Release(lease=lease, next_run_time=at(20), hold_while_running=1)
            with anyio.fail_after(5):
                assert await store.release_jobs("s1", [hold]) == set()
    finally:
        await conn.close()
    assert not await _held(schema, "a")
    (again,) = await store.acquire_jobs("s1", at(20), 10, 30)
    assert (again.job_id, again.running) == ("a", 0)


async def test_a_finish_whose_run_holds_nothing_leaves_the_job_row_alone(
    schema: str, open_store: Callable[..., Any]
) -> None:
    # The common finish neither locks nor writes its job's row: a lock on that row (here
    # another transaction's) does not slow it down.
    store = await open_store("s1")
    run, _ = await _one_run_in_flight(store, "a")
    conn = await connect()
    try:
        async with conn.transaction():
            await conn.execute(f"SELECT FROM \"{schema}\".jobs WHERE id = 'a' FOR UPDATE")
            with anyio.fail_after(5):
                await store.finish_run(attrs.evolve(run, outcome=RunOutcome.SUCCESS))
    finally:
        await conn.close()
    assert [r.outcome for r in await store.get_runs("a")] == [RunOutcome.SUCCESS]


async def test_a_held_job_is_freed_without_run_retention(schema: str) -> None:
    # run_retention=0 finishes runs with a statement of its own (nothing is recorded).
    store = PostgresStore(POSTGRES_DSN, schema=schema, run_retention=0)
    await store.start(Wakeups("s1").context)
    try:
        run, lease = await _one_run_in_flight(store, "a")
        hold = Release(lease=lease, next_run_time=at(20), hold_while_running=1)
        assert await store.release_jobs("s1", [hold]) == set()
        assert await _held(schema, "a")
        await store.finish_run(attrs.evolve(run, outcome=RunOutcome.SUCCESS, finished_at=at(3)))
        assert not await _held(schema, "a")
        (again,) = await store.acquire_jobs("s1", at(20), 10, 30)
        assert (again.job_id, again.running) == ("a", 0)
    finally:
        await store.stop()


async def test_a_hold_racing_the_end_of_the_last_runs_never_strands_its_job(
    schema: str, open_store: Callable[..., Any]
) -> None:
    # Two stores, two pools: one releases the job with a hold while its last runs end
    # through the other (every fourth round, one of them with a retry, which keeps the
    # count, and ends afterwards). Whichever commits first, the job ends up acquirable
    # with nothing in flight: either the release finds the slots free (not held), or a
    # finish frees the job it held.
    rounds = 200
    rng = random.Random(20261125)
    woken = 0
    barrier = anyio.Event()

    def wakeup() -> None:
        # Only the finisher's NOTIFYs wake the releaser (its own are ignored), and the
        # finisher sends one only when a finish frees a held job.
        nonlocal woken
        woken += 1

    releaser = await open_store(
        context=StoreContext(scheduler_id="s1", wakeup=wakeup, publish=lambda e: barrier.set())
    )
    finisher = await open_store("s2")

    async def after(checkpoints: int, action: Callable[[], Awaitable[object]]) -> None:
        for _ in range(checkpoints):
            await anyio.lowlevel.checkpoint()
        await action()

    for i in range(rounds):
        job_id = f"job{i}"
        slots = 1 + i % 3
        await releaser.add_jobs([make_job(job_id, 1)], replace=False)
        (lease,) = await releaser.acquire_jobs("s1", at(1), 1, 30)
        runs = [Run(job_id=job_id, scheduled_time=at(1), scheduler_id="s1") for _ in range(slots)]
        await releaser.release_jobs("s1", [Release(lease=lease, next_run_time=at(2), started=runs)])
        (lease,) = await releaser.acquire_jobs("s1", at(2), 1, 30)
        assert lease.running == slots
        hold = Release(lease=lease, next_run_time=at(3), hold_while_running=slots)
        retry = None
        if i % 4 == 3:
            retry = Run(job_id=job_id, scheduled_time=at(1), scheduler_id="s2", attempt=2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                after, rng.randrange(6), functools.partial(releaser.release_jobs, "s1", [hold])
            )
            for k, run in enumerate(runs):
                ended = attrs.evolve(run, outcome=RunOutcome.SUCCESS, finished_at=at(2))
                finish = functools.partial(finisher.finish_run, ended)
                if k == 0 and retry is not None:
                    finish = functools.partial(
                        finisher.finish_run,
                        attrs.evolve(ended, outcome=RunOutcome.ERROR),
                        retry=retry,
                        expires_at=at(50),
                    )
                tg.start_soon(after, rng.randrange(6), finish)
        if retry is not None:
            await finisher.finish_run(attrs.evolve(retry, outcome=RunOutcome.SUCCESS))
        assert not await _held(schema, job_id), f"round {i}"
        (again,) = await finisher.acquire_jobs("s2", at(3), 10, 30)
        assert (again.job_id, again.running, again.run_count) == (job_id, 0, slots)
        await finisher.release_jobs("s2", [Release(lease=again, next_run_time=None, remove=True)])
    # NOTIFYs reach the listening connection in commit order: once this event is there,
    # so is every wake-up the finishes sent.
    await finisher.broadcast([JobAdded(timestamp=at(0), job_id="barrier", origin="s2")])
    with anyio.fail_after(5):
        await barrier.wait()
    # Both orders happened: some releases held their job until a finish freed it,
    # others found the slots free already.
    assert 0 < woken < rounds, woken


async def _v2_schema(schema: str, serializer: Any) -> tuple[Run, Run]:
    """Create ``schema`` as horae with layout version 2 left it.

    A due job with a finished run, and a paused job with a run in flight held by
    scheduler "old" until at(40). Returns the two runs.
    """
    sql = Statements.for_schema(schema)
    finished = Run(
        job_id="due",
        scheduled_time=at(1),
        finished_at=at(1),
        outcome=RunOutcome.SUCCESS,
        scheduler_id="old",
    )
    flying = Run(job_id="paused", scheduled_time=at(2), scheduler_id="old")
    conn = await connect()
    try:
        await conn.execute(sql.prepare)
        await conn.execute(sql.migrations[1])
        await conn.execute(sql.migrations[2])
        await conn.execute(sql.set_version, 2)
        await conn.executemany(
            f'INSERT INTO "{schema}".jobs (id, next_run_time, due_at, payload) '
            "VALUES ($1, $2, $2, $3)",
            [
                ("due", at(5), encode_job(make_job("due", 5), serializer)),
                ("paused", None, encode_job(make_job("paused", None), serializer)),
            ],
        )
        await conn.execute(
            f'INSERT INTO "{schema}".runs (id, job_id, scheduled_time, finished_at, outcome, '
            "scheduler_id, attempt, coalesced) VALUES ($1, 'due', $2, $2, 'success', 'old', 1, 0)",
            finished.id,
            finished.scheduled_time,
        )
        await conn.execute(
            f'INSERT INTO "{schema}".running (id, job_id, scheduled_time, scheduler_id, '
            "attempt, coalesced, holder, expires_at) VALUES ($1, 'paused', $2, 'old', 1, 0, "
            "'old', $3)",
            flying.id,
            flying.scheduled_time,
            at(40),
        )
    finally:
        await conn.close()
    return finished, flying


async def test_a_version_2_schema_is_upgraded_and_keeps_its_jobs_and_runs(
    schema: str, open_store: Callable[..., Any]
) -> None:
    finished, flying = await _v2_schema(schema, PostgresStore(POSTGRES_DSN)._serializer)
    store = await open_store("new")
    conn = await connect()
    try:
        assert await conn.fetchval(f'SELECT version FROM "{schema}".schema_version') == 3
        rows = await conn.fetch(f'SELECT id, run_count FROM "{schema}".jobs ORDER BY id')
        assert [(r["id"], r["run_count"]) for r in rows] == [("due", 0), ("paused", 0)]
        assert await conn.fetchval(f'SELECT holds_job FROM "{schema}".running') is False
    finally:
        await conn.close()
    assert [(j.id, j.next_run_time) for j in await store.get_jobs()] == [
        ("due", at(5)),
        ("paused", None),
    ]
    assert [r.id for r in await store.get_runs("due")] == [finished.id]
    assert [r.id for r in await store.get_runs("paused")] == [flying.id]
    # The run's lease is still "old"'s, until at(40).
    assert await store.extend_runs("old", [flying.id], at(40)) == set()
    assert await store.claim_expired_runs("new", at(39), 10, 30) == []
    (lease,) = await store.acquire_jobs("new", at(5), 10, 30)
    assert (lease.job_id, lease.running, lease.run_count) == ("due", 0, 0)
    started = Run(job_id="due", scheduled_time=at(5), scheduler_id="new")
    hold = Release(lease=lease, next_run_time=at(15), started=[started], hold_while_running=1)
    assert await store.release_jobs("new", [hold]) == set()
    assert await store.next_run_time() is None  # held
    await store.finish_run(attrs.evolve(started, outcome=RunOutcome.SUCCESS, finished_at=at(6)))
    (lease,) = await store.acquire_jobs("new", at(15), 10, 30)
    assert (lease.job_id, lease.run_count) == ("due", 1)
    # A run in flight from before the upgrade holds a job like any other.
    await store.update_job(make_job("paused", 15))
    (lease,) = await store.acquire_jobs("new", at(15), 10, 30)
    assert (lease.job_id, lease.running) == ("paused", 1)
    hold = Release(lease=lease, next_run_time=at(25), hold_while_running=1)
    assert await store.release_jobs("new", [hold]) == set()
    assert await _held(schema, "paused")
    (claimed,) = await store.claim_expired_runs("new", at(40), 10, 30)
    assert claimed.id == flying.id
    await store.finish_run(attrs.evolve(claimed, outcome=RunOutcome.ABANDONED, finished_at=at(41)))
    assert not await _held(schema, "paused")
    assert await store.next_run_time() == at(25)


# ------------------------------------------------- the register of schedulers


async def test_a_schema_without_the_register_gains_it_and_keeps_its_version(
    schema: str, open_store: Callable[..., Any]
) -> None:
    # As a horae of the current layout from before the register left the schema: the
    # register is added at start without a new layout version, so such processes, still
    # sharing the schema, go on starting (their version check passes) and working.
    sql = Statements.for_schema(schema)
    conn = await connect()
    try:
        await conn.execute(sql.prepare)
        for step in range(1, CURRENT_VERSION + 1):
            await conn.execute(sql.migrations[step])
        await conn.execute(sql.set_version, CURRENT_VERSION)
        assert await conn.fetchval("SELECT to_regclass($1)", f"{schema}.schedulers") is None
        store = await open_store("new")
        assert await conn.fetchval(f'SELECT version FROM "{schema}".schema_version') == (
            CURRENT_VERSION
        )
        assert await conn.fetchval("SELECT to_regclass($1)", f"{schema}.schedulers") is not None
    finally:
        await conn.close()
    info = scheduler_info("new", 5)
    await store.heartbeat(info)
    await open_store("again")  # the table is there already: created once
    assert await store.get_schedulers(at(6)) == [info]


async def test_a_heartbeat_notifies_nobody(open_store: Callable[..., Any]) -> None:
    theirs = Wakeups("theirs")
    await open_store(context=theirs.context)
    store = await open_store("mine")
    await store.heartbeat(scheduler_info("mine", 5))
    await store.remove_scheduler("mine")
    # NOTIFYs arrive in commit order: once this one has, any from the heartbeat would too.
    await store.add_jobs([make_job("a", 1)], replace=False)
    await theirs.wait()
    assert theirs.count == 1


async def test_the_cleanup_of_a_heartbeat_skips_a_locked_record(
    schema: str, open_store: Callable[..., Any]
) -> None:
    store = await open_store("s1")
    await store.heartbeat(scheduler_info("dead", 5))
    late = 35 + SCHEDULER_RECORD_KEEP + 1  # "dead" is due for dropping from here on
    conn = await connect()
    try:
        async with conn.transaction():
            # Another transaction has the stale row locked (as a concurrent heartbeat
            # dropping it would): this heartbeat neither waits for it nor fails.
            await conn.execute(f"SELECT FROM \"{schema}\".schedulers WHERE id = 'dead' FOR UPDATE")
            with anyio.fail_after(5):
                await store.heartbeat(scheduler_info("live", late))
    finally:
        await conn.close()
    assert [i.id for i in await store.get_schedulers(at(late))] == ["dead", "live"]
    # The next heartbeat finds it again.
    await store.heartbeat(scheduler_info("live", late + 10))
    assert [i.id for i in await store.get_schedulers(at(late))] == ["live"]


# ------------------------------------------------------- listings for tools


async def _in_flight(store: PostgresStore, job_id: str, when: float, count: int) -> list[Run]:
    """``count`` runs of ``job_id`` for the fire time ``when``, put in flight by a release."""
    (lease,) = await store.acquire_jobs("s1", at(when), 1, 30)
    assert lease.job_id == job_id
    runs = [Run(job_id=job_id, scheduled_time=at(when), scheduler_id="s1") for _ in range(count)]
    release = Release(lease=lease, next_run_time=at(when + 10), started=runs)
    assert await store.release_jobs("s1", [release]) == set()
    return runs


async def test_each_listing_is_one_statement_whatever_the_number_of_ids(schema: str) -> None:
    import asyncpg

    statements: list[str] = []

    async def log_statements(conn: Any) -> None:
        conn.add_query_logger(lambda logged: statements.append(logged.query))

    pool = await asyncpg.create_pool(POSTGRES_DSN, min_size=1, max_size=3, init=log_statements)
    store = PostgresStore(pool, schema=schema)
    await store.start(Wakeups("s1").context)
    try:
        ids = [f"job-{i:04d}" for i in range(5000)]
        await store.add_jobs([make_job(job_id, 10) for job_id in ids], replace=False)
        leases = await store.acquire_jobs("s1", at(10), 2500, 30)
        runs = {lease.job_id: Run(job_id=lease.job_id, scheduled_time=at(10)) for lease in leases}
        await store.release_jobs(
            "s1",
            [
                Release(lease=lease, next_run_time=at(20), started=[runs[lease.job_id]])
                for lease in leases
            ],
        )
        asked = [*ids, "nope", *ids[:10]]  # unknown and repeated ids too

        async def count(listing: Awaitable[Any]) -> Any:
            statements.clear()
            result = await listing
            # Only the store's own statements name the schema (not the pool's resets).
            assert len([s for s in statements if schema in s]) == 1
            return result

        latest = await count(store.get_latest_runs(asked))
        assert {job_id: run.id for job_id, run in latest.items()} == {
            job_id: run.id for job_id, run in runs.items()
        }
        assert await count(store.get_job_ids()) == ids
        assert len(await count(store.get_runs_in_flight(limit=3000))) == 2500
    finally:
        await store.stop()
        await pool.close()


async def test_latest_runs_read_through_the_indexes(
    schema: str, open_store: Callable[..., Any]
) -> None:
    await open_store()
    conn = await connect()
    try:
        await conn.execute("SET enable_seqscan = off")
        rows = await conn.fetch(
            "EXPLAIN " + Statements.for_schema(schema).get_latest_runs, ["a", "b"]
        )
    finally:
        await conn.close()
    plan = "\n".join(row[0] for row in rows)
    assert "running_job_id" in plan
    assert "Index Scan Backward using runs_job_id_seq" in plan


async def test_latest_run_among_runs_in_flight_at_one_time_is_that_of_get_runs(
    open_store: Callable[..., Any],
) -> None:
    store = await open_store()
    await store.add_jobs([make_job("a", 10)], replace=False)
    early = await _in_flight(store, "a", 10, 1)
    runs = await _in_flight(store, "a", 20, 8)
    # Ties (one scheduled time) go by run id, in get_runs as in get_latest_runs.
    listed = await store.get_runs("a")
    assert [r.id for r in listed] == [r.id for r in sorted(runs, key=lambda r: str(r.id)) + early]
    assert (await store.get_latest_runs(["a"]))["a"] == listed[0]


async def test_runs_in_flight_are_ordered_by_the_text_of_their_ids(
    open_store: Callable[..., Any],
) -> None:
    store = await open_store()
    await store.add_jobs([make_job("a", 10)], replace=False)
    runs = await _in_flight(store, "a", 10, 40)
    by_text = sorted(runs, key=lambda r: str(r.id))
    assert await store.get_runs_in_flight() == by_text
    assert await store.get_runs_in_flight(limit=7) == by_text[:7]
    assert await store.get_runs_in_flight(limit=0) == []


async def test_job_ids_are_in_python_order_whatever_the_collation(
    schema: str, open_store: Callable[..., Any]
) -> None:
    store = await open_store()
    ids = ["b", "B", "a", "A", "é", "e", "z", "_x", "10", "9"]
    await store.add_jobs([make_job(job_id, None) for job_id in ids], replace=False)
    conn = await connect()
    try:
        if not await conn.fetchval(
            "SELECT count(*) FROM pg_collation WHERE collname = 'und-x-icu'"
        ):
            pytest.skip("this PostgreSQL has no ICU collations")
        # A database whose collation sorts "a" next to "A" and "é" next to "e".
        await conn.execute(
            f'ALTER TABLE "{schema}".jobs ALTER COLUMN id TYPE text COLLATE "und-x-icu"'
        )
        in_database = await conn.fetchval(
            f'SELECT array(SELECT id FROM "{schema}".jobs ORDER BY id)'
        )
    finally:
        await conn.close()
    assert in_database != sorted(ids)
    assert await store.get_job_ids() == sorted(ids)
