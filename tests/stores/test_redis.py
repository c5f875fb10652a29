"""What only the Redis store does: its key layout, scripts, cross-process wake-ups,
layout upgrades, holds racing finishes, the keys of the register of schedulers, and the
asyncio-only refusal on trio. The shared behaviour is in the conformance suite."""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import attrs
import pytest

from horae import JobLookupError, Run, RunOutcome, StoreError
from horae.events import JobAdded
from horae.stores._codec import encode_job
from horae.stores.base import SCHEDULER_RECORD_KEEP, Release, StoreContext
from horae.stores.redis import LAYOUT_VERSION, RedisStore
from tests.services import REDIS_URL, unavailable

from .conftest import context
from .helpers import at, make_job, scheduler_info
from .target_redis import delete_prefix

redis_asyncio = pytest.importorskip("redis.asyncio")

pytestmark = pytest.mark.anyio

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
US = timedelta(microseconds=1)


@pytest.fixture
def anyio_backend() -> str:
    # redis-py's asyncio client runs on asyncio only; the trio refusal has its own test.
    return "asyncio"


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    client = redis_asyncio.Redis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        await client.aclose()
        unavailable(f"Redis at {REDIS_URL}", exc)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def prefix(client: Any) -> AsyncIterator[str]:
    prefix = f"horae-test-{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        await delete_prefix(client, prefix)


class Wakeups:
    """A store context's wakeup callback that counts its calls and can be waited for."""

    def __init__(self) -> None:
        self.count = 0
        self._event = anyio.Event()

    def __call__(self) -> None:
        self.count += 1
        self._event.set()

    def context(self, scheduler_id: str = "test") -> StoreContext:
        return StoreContext(scheduler_id=scheduler_id, wakeup=self, publish=lambda e: None)

    def expect(self) -> None:
        """Wait for calls from now on."""
        self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


async def keys_of(client: Any) -> set[str]:
    return {key.decode() async for key in client.scan_iter(count=1000)}


async def test_every_key_is_under_the_prefix(client: Any, prefix: str) -> None:
    before = await keys_of(client)
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        await store.add_jobs([make_job(str(i), i) for i in range(5)], replace=False)
        await store.add_jobs([make_job("paused", None)], replace=False)
        leases = await store.acquire_jobs("s1", at(2), limit=10, lease_duration=30)
        run = Run(job_id="0", scheduled_time=at(0), scheduler_id="s1")
        missed = Run(job_id="1", scheduled_time=at(1), outcome=RunOutcome.MISSED, scheduler_id="s1")
        await store.release_jobs(
            "s1",
            [
                Release(lease=leases[0], next_run_time=at(10), started=[run]),
                Release(lease=leases[1], next_run_time=at(11), finished=[missed]),
            ],
        )
        # leases[2] stays leased.
        new = await keys_of(client) - before
        mine = {key for key in new if key.startswith(f"{prefix}:")}
        # Other clients (tests running at the same time) may write keys of their own,
        # but none of them has this test's prefix, nor is one of the store's key names
        # without a prefix.
        unprefixed = {
            *("version", "due", "jobs", "leases", "token", "job:0", "runs:1"),
            *("runleases", "runholders", "held"),
        }
        assert not {key for key in new - mine if prefix in key}
        assert not {key for key in new if key.lstrip(":") in unprefixed}
        assert {key.removeprefix(f"{prefix}:") for key in mine} == {
            "version",
            "due",
            "jobs",
            "leases",
            "token",
            *(f"job:{i}" for i in ("0", "1", "2", "3", "4", "paused")),
            "inflight:0",
            "runs:1",
            "runleases",
            "runholders",
        }
        assert await client.get(f"{prefix}:version") == str(LAYOUT_VERSION).encode()
        assert await client.zrange(f"{prefix}:due", 0, -1) == [b"3", b"4", b"0", b"1"]
        assert await client.zscore(f"{prefix}:due", "3") == (at(3) - EPOCH) // US
        lease = await client.hgetall(f"{prefix}:job:2")
        assert lease[b"holder"] == b"s1"
        assert int(lease[b"ltoken"]) == leases[2].token
        assert lease[b"exp"] == str((at(32) - EPOCH) // US).encode()
        assert await client.hget(f"{prefix}:job:0", "running") == b"1"
        # One run started so far; none for the job whose fire time was missed.
        assert await client.hget(f"{prefix}:job:0", "run_count") == b"1"
        assert await client.hget(f"{prefix}:job:1", "run_count") is None
        # The started run is held by s1 until the job's lease expiry.
        assert await client.zrange(f"{prefix}:runleases", 0, -1, withscores=True) == [
            (str(run.id).encode(), (at(32) - EPOCH) // US)
        ]
        assert await client.hgetall(f"{prefix}:runholders") == {str(run.id).encode(): b"2:s10"}
        await store.finish_run(
            Run(
                id=run.id,
                job_id="0",
                scheduled_time=at(0),
                finished_at=at(1),
                outcome=RunOutcome.SUCCESS,
                result=3,
            )
        )
        assert await client.hget(f"{prefix}:job:0", "running") is None
        assert not await client.exists(f"{prefix}:inflight:0")
        assert not await client.exists(f"{prefix}:runleases", f"{prefix}:runholders")
    finally:
        await store.stop()


async def test_scripts_are_loaded_once_and_again_after_a_flush(client: Any, prefix: str) -> None:
    loads: list[str] = []
    original = client.script_load

    async def counting_load(script: str) -> Any:
        loads.append(script)
        return await original(script)

    client.script_load = counting_load
    store = RedisStore(client, prefix=prefix)
    await store.start(context())
    try:
        shas = [script.sha for script in _scripts()]
        assert all(await client.script_exists(*shas))
        for i in range(3):
            await store.add_jobs([make_job(f"j{i}", i)], replace=False)
            leases = await store.acquire_jobs("s", at(i), 10, 30)
            await store.release_jobs("s", [Release(lease=leases[0], next_run_time=at(99))])
        assert loads == []  # every call went by SHA
        await client.script_flush()
        await store.add_jobs([make_job("after-flush", 5)], replace=False)
        assert len(loads) == 1
        assert (await store.get_job("after-flush")).next_run_time == at(5)
        (lease,) = await store.acquire_jobs("s", at(5), 10, 30)
        assert lease.job_id == "after-flush"
        assert len(loads) == 2  # acquire's script, once
        assert all(await client.script_exists(*shas[:1]))
    finally:
        await store.stop()
    assert await client.ping()  # a client given to the store stays open


def _scripts() -> list[Any]:
    from horae.stores import redis as module

    return list(module._SCRIPTS)


async def test_concurrent_acquirers_get_disjoint_jobs(prefix: str) -> None:
    stores = [RedisStore(REDIS_URL, prefix=prefix) for _ in range(4)]
    for i, store in enumerate(stores):
        await store.start(context(f"s{i}"))
    try:
        await stores[0].add_jobs([make_job(f"job{i}", i % 50) for i in range(2000)], replace=False)
        taken: dict[str, list[str]] = {f"s{i}": [] for i in range(4)}

        async def acquire(store: RedisStore, scheduler_id: str) -> None:
            while leases := await store.acquire_jobs(scheduler_id, at(60), 37, 30):
                taken[scheduler_id].extend(lease.job_id for lease in leases)

        async with anyio.create_task_group() as tg:
            for i, store in enumerate(stores):
                tg.start_soon(acquire, store, f"s{i}")
        every = [job_id for ids in taken.values() for job_id in ids]
        assert len(every) == 2000
        assert set(every) == {f"job{i}" for i in range(2000)}
        assert sum(1 for ids in taken.values() if ids) > 1  # they really competed
    finally:
        for store in stores:
            await store.stop()


async def test_changes_wake_other_stores_not_their_own(prefix: str) -> None:
    woken = Wakeups()
    writer_woken = Wakeups()
    listener = RedisStore(REDIS_URL, prefix=prefix)
    writer = RedisStore(REDIS_URL, prefix=prefix)
    await listener.start(woken.context("listener"))
    await writer.start(writer_woken.context("writer"))
    try:

        async def woken_after(action: Callable[[], Any]) -> None:
            woken.expect()
            await action()
            with anyio.fail_after(5):
                await woken.wait()

        await woken_after(lambda: writer.add_jobs([make_job("a", 10)], replace=False))
        await woken_after(lambda: writer.update_job(make_job("a", 20)))
        await woken_after(lambda: writer.remove_job("a"))
        await woken_after(lambda: writer.add_jobs([make_job("b", 10)], replace=False))
        (lease,) = await writer.acquire_jobs("writer", at(10), 10, lease_duration=30)
        # The job comes back sooner than its lease would have expired.
        await woken_after(
            lambda: writer.release_jobs("writer", [Release(lease=lease, next_run_time=at(20))])
        )
        await woken_after(writer.remove_all_jobs)
        assert woken.count == 6
        assert writer_woken.count == 0
    finally:
        await writer.stop()
        await listener.stop()


async def test_listener_comes_back_after_its_connection_is_killed(client: Any, prefix: str) -> None:
    woken = Wakeups()
    name = f"listener-{uuid.uuid4().hex[:8]}"
    own = redis_asyncio.Redis.from_url(REDIS_URL, client_name=name)
    listener = RedisStore(own, prefix=prefix)
    writer = RedisStore(REDIS_URL, prefix=prefix)
    await listener.start(woken.context())
    await writer.start(context("writer"))
    try:
        clients = await client.client_list()
        (pubsub,) = [c for c in clients if c["name"] == name and int(c["sub"]) > 0]
        woken.expect()
        await client.client_kill_filter(_id=pubsub["id"])
        with anyio.fail_after(5):
            # Back again, it wakes its scheduler (messages may have been missed) ...
            await woken.wait()
            # ... and hears the other scheduler's changes again.
            woken.expect()
            await writer.add_jobs([make_job("after", 1)], replace=False)
            await woken.wait()
    finally:
        await writer.stop()
        await listener.stop()
        await own.aclose()


async def test_removed_while_leased_is_released_and_gone(client: Any, prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        await store.add_jobs([make_job("r", 1)], replace=False)
        (lease,) = await store.acquire_jobs("s", at(1), 10, 30)
        await store.remove_job("r")
        with pytest.raises(JobLookupError):
            await store.get_job("r")
        release = Release(lease=lease, next_run_time=at(11))
        assert await store.release_jobs("s", [release]) == {"r"}
        with pytest.raises(JobLookupError):
            await store.get_job("r")
        assert not await client.exists(f"{prefix}:job:r")
        assert await store.next_run_time() is None
    finally:
        await store.stop()


async def test_a_newer_layout_version_is_refused(client: Any, prefix: str) -> None:
    await client.set(f"{prefix}:version", str(LAYOUT_VERSION + 1))
    store = RedisStore(REDIS_URL, prefix=prefix)
    with pytest.raises(StoreError, match=f"layout version {LAYOUT_VERSION + 1}"):
        await store.start(context())
    await store.stop()


async def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="url_or_client: 'localhost:6379' is not a Redis URL"):
        RedisStore("localhost:6379")
    with pytest.raises(TypeError, match="url_or_client"):
        RedisStore(6379)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefix"):
        RedisStore(REDIS_URL, prefix="")
    with pytest.raises(ValueError, match="run_retention"):
        RedisStore(REDIS_URL, run_retention=-1)
    with pytest.raises(StoreError, match="not started"):
        await RedisStore(REDIS_URL).get_job("x")


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_is_refused_with_what_to_do() -> None:
    store = RedisStore(REDIS_URL, prefix=f"horae-test-{uuid.uuid4().hex}")
    with pytest.raises(StoreError, match="RedisStore needs the asyncio backend") as info:
        await store.start(context())
    assert "backend='asyncio'" in str(info.value)


async def test_runs_ending_together_are_all_recorded(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix, run_retention=1000)
    await store.start(context())
    try:
        await store.add_jobs([make_job("many", 1)], replace=False)
        (lease,) = await store.acquire_jobs("s", at(1), 10, 30)
        started = [Run(job_id="many", scheduled_time=at(i), scheduler_id="s") for i in range(300)]
        await store.release_jobs("s", [Release(lease=lease, next_run_time=at(2), started=started)])
        (lease,) = await store.acquire_jobs("s", at(2), 10, 30)
        assert lease.running == 300
        await store.release_jobs("s", [Release(lease=lease, next_run_time=at(3))])
        async with anyio.create_task_group() as tg:
            for run in started:
                finished = Run(
                    id=run.id,
                    job_id="many",
                    scheduled_time=run.scheduled_time,
                    finished_at=at(5),
                    outcome=RunOutcome.SUCCESS,
                    result=run.scheduled_time,
                )
                tg.start_soon(store.finish_run, finished)
        runs = await store.get_runs("many", limit=1000)
        assert sorted(r.id for r in runs) == sorted(r.id for r in started)
        assert {r.outcome for r in runs} == {RunOutcome.SUCCESS}
        assert all(r.result == r.scheduled_time for r in runs)
        (lease,) = await store.acquire_jobs("s", at(3), 10, 30)
        assert lease.running == 0
    finally:
        await store.stop()


@pytest.mark.parametrize(
    "job_id", ["a:b:c", "with space", "ünï ✓", 'quote"back\\slash', "[1]", "a/b"]
)
async def test_any_job_id_round_trips(prefix: str, job_id: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        await store.add_jobs([make_job(job_id, 1)], replace=False)
        (lease,) = await store.acquire_jobs("s", at(1), 10, 30)
        assert lease.job_id == job_id
        assert lease.job is not None
        run = Run(job_id=job_id, scheduled_time=at(1), scheduler_id="s")
        assert not await store.release_jobs(
            "s", [Release(lease=lease, next_run_time=at(2), started=[run])]
        )
        await store.finish_run(
            Run(id=run.id, job_id=job_id, scheduled_time=at(1), outcome=RunOutcome.SUCCESS)
        )
        assert [r.id for r in await store.get_runs(job_id)] == [run.id]
        assert [j.id for j in await store.get_jobs()] == [job_id]
        assert (await store.get_job(job_id)).next_run_time == at(2)
        assert await store.get_job_ids() == [job_id]
        assert [(k, r.id) for k, r in (await store.get_latest_runs([job_id])).items()] == [
            (job_id, run.id)
        ]
    finally:
        await store.stop()


async def test_a_client_that_decodes_responses_works_too(prefix: str) -> None:
    own = redis_asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    store = RedisStore(own, prefix=prefix)
    woken = Wakeups()
    other = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(woken.context())
    await other.start(context("other"))
    try:
        woken.expect()
        await other.add_jobs([make_job("d", 1), make_job("p", None)], replace=False)
        with anyio.fail_after(5):
            await woken.wait()
        assert [j.id for j in await store.get_jobs()] == ["d", "p"]
        assert await store.next_run_time() == at(1)
        (lease,) = await store.acquire_jobs("s", at(1), 10, 30)
        run = Run(job_id="d", scheduled_time=at(1), scheduler_id="s")
        await store.release_jobs("s", [Release(lease=lease, next_run_time=at(2), started=[run])])
        assert [r.id for r in await store.get_runs("d")] == [run.id]
        assert await store.get_job_ids() == ["d", "p"]
        assert await store.get_runs_in_flight() == [run]
        assert await store.get_latest_runs(["d", "p"]) == {"d": run}
        unknown = uuid.uuid4()
        assert await store.extend_runs("s", [run.id, unknown], at(60)) == {unknown}
        (claimed,) = await store.claim_expired_runs("s2", at(60), 10, 30)
        assert claimed.id == run.id
        info = scheduler_info("s2", 60)
        await store.heartbeat(info)
        assert await store.get_schedulers(at(61)) == [attrs.evolve(info, run_leases=1)]
        await store.remove_scheduler("s2")
        assert await store.get_schedulers(at(61)) == []
    finally:
        await other.stop()
        await store.stop()
        await own.aclose()


async def test_layout_1_is_upgraded_and_its_in_flight_runs_can_be_claimed(
    client: Any, prefix: str
) -> None:
    # What horae of layout 1 left behind: a job with a run in flight, and a removed job
    # (no longer in the jobs set) with a run in flight, none of them leased.
    store = RedisStore(REDIS_URL, prefix=prefix)
    kept = Run(job_id="kept", scheduled_time=at(1), scheduler_id="old")
    gone = Run(job_id="gone", scheduled_time=at(2), scheduler_id="old")
    await client.set(f"{prefix}:version", "1")
    await client.sadd(f"{prefix}:jobs", "kept")
    await client.hset(f"{prefix}:job:kept", mapping={"payload": "{}", "nrt": "", "running": 1})
    await client.hset(f"{prefix}:job:gone", "running", 1)
    for run in (kept, gone):
        await client.hset(f"{prefix}:inflight:{run.job_id}", str(run.id), store._encode_run(run))
    await store.start(context())
    try:
        assert await client.get(f"{prefix}:version") == str(LAYOUT_VERSION).encode()
        # Expired since 1970: the first claim takes both.
        claimed = await store.claim_expired_runs("new", at(0), limit=10, lease_duration=30)
        assert {r.id for r in claimed} == {kept.id, gone.id}
        assert {r.scheduler_id for r in claimed} == {"old"}
        for run in claimed:
            await store.finish_run(attrs.evolve(run, outcome=RunOutcome.ABANDONED))
        assert await client.hget(f"{prefix}:job:kept", "running") is None
        assert not await client.exists(f"{prefix}:job:gone")
        assert [r.outcome for r in await store.get_runs("gone")] == [RunOutcome.ABANDONED]
    finally:
        await store.stop()
    # Once upgraded, nothing happens again.
    again = RedisStore(REDIS_URL, prefix=prefix)
    await again.start(context())
    try:
        assert await again.claim_expired_runs("new", at(10**6), 10, 30) == []
    finally:
        await again.stop()


async def test_index_entries_without_their_run_are_dropped_by_claims(
    client: Any, prefix: str
) -> None:
    # A horae of layout 1 still running beside this one finishes runs without touching
    # the index: the entries left behind must not be claimed as runs.
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        await store.add_jobs([make_job("a", 1)], replace=False)
        run = await _start(store, "a", 1, "s1")
        await client.hdel(f"{prefix}:inflight:a", str(run.id))
        assert await store.get_runs_in_flight() == []
        assert await store.claim_expired_runs("s2", at(100), limit=10, lease_duration=30) == []
        assert not await client.exists(f"{prefix}:runleases", f"{prefix}:runholders")
    finally:
        await store.stop()


async def _start(store: RedisStore, job_id: str, when: float, holder: str) -> Run:
    (lease,) = await store.acquire_jobs(holder, at(when), limit=1, lease_duration=30)
    run = Run(job_id=job_id, scheduled_time=at(when), scheduler_id=holder)
    assert not await store.release_jobs(
        holder, [Release(lease=lease, next_run_time=at(when + 1000), started=[run])]
    )
    return run


async def test_concurrent_claimers_get_disjoint_runs(prefix: str) -> None:
    stores = [RedisStore(REDIS_URL, prefix=prefix) for _ in range(4)]
    for i, store in enumerate(stores):
        await store.start(context(f"s{i}"))
    try:
        await stores[0].add_jobs([make_job("many", 1)], replace=False)
        (lease,) = await stores[0].acquire_jobs("dead", at(1), 10, 30)
        started = [
            Run(job_id="many", scheduled_time=at(1), scheduler_id="dead") for _ in range(500)
        ]
        await stores[0].release_jobs(
            "dead", [Release(lease=lease, next_run_time=at(2), started=started)]
        )
        taken: dict[str, list[Run]] = {f"s{i}": [] for i in range(4)}

        async def claim(store: RedisStore, scheduler_id: str) -> None:
            while runs := await store.claim_expired_runs(scheduler_id, at(31), 17, 30):
                taken[scheduler_id].extend(runs)

        async with anyio.create_task_group() as tg:
            for i, store in enumerate(stores):
                tg.start_soon(claim, store, f"s{i}")
        every = [run.id for runs in taken.values() for run in runs]
        assert sorted(every) == sorted(run.id for run in started)
        assert sum(1 for runs in taken.values() if runs) > 1  # they really competed
        # Each holds what it claimed, and nothing else.
        for scheduler_id, runs in taken.items():
            mine = [run.id for run in runs]
            others = [run.id for run in started if run.id not in set(mine)]
            assert await stores[0].extend_runs(scheduler_id, mine, at(100)) == set()
            assert await stores[0].extend_runs(scheduler_id, others, at(100)) == set(others)
    finally:
        for store in stores:
            await store.stop()


@pytest.mark.parametrize("holder", ["s:1", "1:s", "", "ünï ✓"])
async def test_any_scheduler_and_job_id_hold_runs(prefix: str, holder: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        job_id = "3:a:b"
        await store.add_jobs([make_job(job_id, 1)], replace=False)
        run = await _start(store, job_id, 1, "3:a")
        # A holder that is a prefix of another, or of holder + job id, holds nothing.
        assert await store.extend_runs("3", [run.id], at(50)) == {run.id}
        assert await store.extend_runs("3:a:b", [run.id], at(50)) == {run.id}
        (claimed,) = await store.claim_expired_runs(holder, at(31), 10, 30)
        assert claimed.id == run.id
        assert claimed.job_id == job_id
        assert await store.extend_runs(holder, [run.id], at(90)) == set()
        assert await store.extend_runs("3:a", [run.id], at(90)) == {run.id}
        retry = Run(job_id=job_id, scheduled_time=at(1), scheduler_id=holder, attempt=2)
        await store.finish_run(
            attrs.evolve(claimed, outcome=RunOutcome.ABANDONED), retry=retry, expires_at=at(95)
        )
        (again,) = await store.claim_expired_runs("other", at(95), 10, 30)
        assert (again.id, again.attempt, again.scheduler_id) == (retry.id, 2, holder)
    finally:
        await store.stop()


async def test_a_late_finish_keeps_the_first_record_among_many(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        await store.add_jobs([make_job("a", 1)], replace=False)
        run = await _start(store, "a", 1, "s1")
        (claimed,) = await store.claim_expired_runs("s2", at(31), 10, 30)
        await store.finish_run(attrs.evolve(claimed, outcome=RunOutcome.ABANDONED))
        # Other runs recorded since, then the late outcome, and a run_job run (never in
        # flight) that is recorded once.
        for i in range(5):
            await store.finish_run(
                Run(job_id="a", scheduled_time=at(2 + i), outcome=RunOutcome.MISSED)
            )
        await store.finish_run(attrs.evolve(run, outcome=RunOutcome.SUCCESS, result=1))
        direct = Run(job_id="a", scheduled_time=at(9), outcome=RunOutcome.SUCCESS)
        await store.finish_run(direct)
        runs = await store.get_runs("a")
        assert len(runs) == 7
        assert runs[0].id == direct.id
        assert [r.outcome for r in runs if r.id == run.id] == [RunOutcome.ABANDONED]
    finally:
        await store.stop()


async def test_a_retry_needs_its_lease_expiry(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        run = Run(job_id="a", scheduled_time=at(1), outcome=RunOutcome.ERROR)
        with pytest.raises(ValueError, match="expires_at"):
            await store.finish_run(run, retry=Run(job_id="a", scheduled_time=at(1), attempt=2))
    finally:
        await store.stop()


async def test_a_held_job_waits_in_the_held_set_with_its_next_run_time(
    client: Any, prefix: str
) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    held, due = f"{prefix}:held", f"{prefix}:due"
    try:
        await store.add_jobs([make_job("a", 1), make_job("b", 1)], replace=False)
        leases = await store.acquire_jobs("s", at(1), 10, 30)
        runs = {lease.job_id: Run(job_id=lease.job_id, scheduled_time=at(1)) for lease in leases}
        releases = [
            Release(
                lease=lease,
                next_run_time=at(2),
                started=[runs[lease.job_id]],
                hold_while_running=1,
            )
            for lease in leases
        ]
        assert await store.release_jobs("s", releases) == set()
        assert await client.smembers(held) == {b"a", b"b"}
        assert await client.zcard(due) == 0
        assert await client.hget(f"{prefix}:job:a", "nrt") == str((at(2) - EPOCH) // US).encode()
        # The end of a's run frees a: back in the due set at its next run time.
        await store.finish_run(attrs.evolve(runs["a"], outcome=RunOutcome.SUCCESS))
        assert await client.smembers(held) == {b"b"}
        assert await client.zrange(due, 0, -1, withscores=True) == [(b"a", (at(2) - EPOCH) // US)]
        # A removed job is held no more; nor is any job after remove_all_jobs().
        await store.remove_job("b")
        assert not await client.exists(held)
        await store.add_jobs([make_job("b", 1)], replace=False)
        (lease,) = await store.acquire_jobs("s", at(1), 10, 30)
        assert (lease.job_id, lease.run_count, lease.running) == ("b", 0, 1)
        hold = Release(lease=lease, next_run_time=at(2), hold_while_running=1)
        await store.release_jobs("s", [hold])
        assert await client.smembers(held) == {b"b"}
        await store.remove_all_jobs()
        assert not await client.exists(held, due)
        # The run of the removed job still ends well, and frees nothing.
        await store.finish_run(attrs.evolve(runs["b"], outcome=RunOutcome.SUCCESS))
        assert not await client.exists(held, due, f"{prefix}:job:b")
    finally:
        await store.stop()


async def test_a_hold_racing_the_end_of_the_last_runs_never_strands_its_job(
    client: Any, prefix: str
) -> None:
    # Two store instances, two connections: one releases the job with a hold as its
    # last runs end through the other. Whichever script Redis runs first, the job must
    # end up acquirable with nothing in flight: either the release finds the slots free
    # (not held), or the finish frees the job it held.
    rounds = 200
    rng = random.Random(20261125)
    woken = 0
    barrier = anyio.Event()

    def wakeup() -> None:
        # Only the finisher's wake-ups reach the releaser: its own are ignored, and the
        # finisher publishes one only when a finish frees a held job.
        nonlocal woken
        woken += 1

    releaser = RedisStore(REDIS_URL, prefix=prefix)
    finisher = RedisStore(REDIS_URL, prefix=prefix)
    await releaser.start(
        StoreContext(scheduler_id="s1", wakeup=wakeup, publish=lambda e: barrier.set())
    )
    await finisher.start(context("s2"))

    async def after(checkpoints: int, action: Callable[[], Awaitable[object]]) -> None:
        for _ in range(checkpoints):
            await anyio.lowlevel.checkpoint()
        await action()

    try:
        for i in range(rounds):
            job_id = f"job{i}"
            slots = 1 + i % 3
            await releaser.add_jobs([make_job(job_id, 1)], replace=False)
            (lease,) = await releaser.acquire_jobs("s1", at(1), 1, 30)
            runs = [
                Run(job_id=job_id, scheduled_time=at(1), scheduler_id="s1") for _ in range(slots)
            ]
            await releaser.release_jobs(
                "s1", [Release(lease=lease, next_run_time=at(2), started=runs)]
            )
            (lease,) = await releaser.acquire_jobs("s1", at(2), 1, 30)
            assert lease.running == slots
            hold = Release(lease=lease, next_run_time=at(3), hold_while_running=slots)
            async with anyio.create_task_group() as tg:
                tg.start_soon(after, rng.randrange(4), partial(releaser.release_jobs, "s1", [hold]))
                for run in runs:
                    ended = attrs.evolve(run, outcome=RunOutcome.SUCCESS, finished_at=at(2))
                    tg.start_soon(after, rng.randrange(4), partial(finisher.finish_run, ended))
            assert not await client.sismember(f"{prefix}:held", job_id), f"round {i}"
            (again,) = await finisher.acquire_jobs("s2", at(3), 10, 30)
            assert (again.job_id, again.running, again.run_count) == (job_id, 0, slots)
            await finisher.release_jobs(
                "s2", [Release(lease=again, next_run_time=None, remove=True)]
            )
        # Events and wake-ups reach the releaser in the order Redis published them: once
        # this event is there, so is every wake-up the finishes sent.
        await finisher.broadcast([JobAdded(timestamp=at(0), job_id="barrier", origin="s2")])
        with anyio.fail_after(5):
            await barrier.wait()
        # Both orders happened: some releases held their job until a finish freed it,
        # others found the slots free already.
        assert 0 < woken < rounds, woken
    finally:
        await finisher.stop()
        await releaser.stop()


async def test_layout_2_is_upgraded_and_keeps_its_jobs_and_runs(client: Any, prefix: str) -> None:
    # What horae of layout 2 left behind: a due job with a finished run, and a paused job
    # with a run in flight held by scheduler "old" until at(40); no run counts, no holds.
    store = RedisStore(REDIS_URL, prefix=prefix)
    serializer = store._serializer
    finished = Run(
        job_id="due", scheduled_time=at(1), outcome=RunOutcome.SUCCESS, scheduler_id="old"
    )
    flying = Run(job_id="paused", scheduled_time=at(2), scheduler_id="old")
    expiry = (at(40) - EPOCH) // US
    await client.set(f"{prefix}:version", "2")
    await client.set(f"{prefix}:token", "7")
    await client.sadd(f"{prefix}:jobs", "due", "paused")
    await client.hset(
        f"{prefix}:job:due",
        mapping={
            "payload": encode_job(make_job("due", 5), serializer),
            "nrt": (at(5) - EPOCH) // US,
        },
    )
    await client.zadd(f"{prefix}:due", {"due": (at(5) - EPOCH) // US})
    await client.hset(
        f"{prefix}:job:paused",
        mapping={
            "payload": encode_job(make_job("paused", None), serializer),
            "nrt": "",
            "running": 1,
        },
    )
    await client.lpush(f"{prefix}:runs:due", store._encode_run(finished))
    await client.hset(f"{prefix}:inflight:paused", str(flying.id), store._encode_run(flying))
    await client.zadd(f"{prefix}:runleases", {str(flying.id): expiry})
    await client.hset(f"{prefix}:runholders", str(flying.id), "3:oldpaused")
    await store.start(context())
    try:
        assert await client.get(f"{prefix}:version") == str(LAYOUT_VERSION).encode() == b"3"
        assert [(j.id, j.next_run_time) for j in await store.get_jobs()] == [
            ("due", at(5)),
            ("paused", None),
        ]
        assert [r.id for r in await store.get_runs("due")] == [finished.id]
        assert [r.id for r in await store.get_runs("paused")] == [flying.id]
        # The run's lease is still "old"'s, until at(40).
        assert await store.extend_runs("old", [flying.id], at(40)) == set()
        assert await store.claim_expired_runs("new", at(39), 10, 30) == []
        (lease,) = await store.acquire_jobs("s", at(5), 10, 30)
        assert (lease.job_id, lease.token, lease.running, lease.run_count) == ("due", 8, 0, 0)
        started = Run(job_id="due", scheduled_time=at(5), scheduler_id="s")
        await store.release_jobs(
            "s",
            [Release(lease=lease, next_run_time=at(15), started=[started], hold_while_running=1)],
        )
        assert await store.next_run_time() is None  # held (the in-flight lease is a run's)
        await store.finish_run(attrs.evolve(started, outcome=RunOutcome.SUCCESS))
        (lease,) = await store.acquire_jobs("s", at(15), 10, 30)
        assert (lease.job_id, lease.run_count) == ("due", 1)
        (claimed,) = await store.claim_expired_runs("new", at(40), 10, 30)
        assert claimed.id == flying.id
    finally:
        await store.stop()
    # Once upgraded, a new start changes nothing.
    again = RedisStore(REDIS_URL, prefix=prefix)
    await again.start(context())
    try:
        assert await client.get(f"{prefix}:version") == b"3"
        assert [j.id for j in await again.get_jobs()] == ["due", "paused"]
    finally:
        await again.stop()


async def test_the_register_is_two_keys_under_the_prefix_and_keeps_layout_3(
    client: Any, prefix: str
) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    pubsub = client.pubsub()
    await pubsub.subscribe(f"{prefix}:wakeup")
    try:
        confirmed = await pubsub.get_message(timeout=5)
        assert confirmed is not None
        assert confirmed["type"] == "subscribe"
        await store.heartbeat(scheduler_info("dead", 5))
        await store.heartbeat(scheduler_info("live", 5))
        # A heartbeat wakes no scheduler: the first message after them is our marker.
        await client.publish(f"{prefix}:wakeup", "marker")
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        assert message is not None
        assert message["data"] == b"marker"
        # No new layout version: a horae of layout 3 without the register still starts.
        assert await client.get(f"{prefix}:version") == b"3" == str(LAYOUT_VERSION).encode()
        assert set(await client.hkeys(f"{prefix}:schedulers")) == {b"dead", b"live"}
        assert await client.zrange(f"{prefix}:heartbeats", 0, -1, withscores=True) == [
            (b"dead", (at(35) - EPOCH) // US),
            (b"live", (at(35) - EPOCH) // US),
        ]
        # A stale record leaves both keys at once.
        await store.heartbeat(scheduler_info("live", 35 + SCHEDULER_RECORD_KEEP + 1))
        assert await client.hkeys(f"{prefix}:schedulers") == [b"live"]
        assert await client.zrange(f"{prefix}:heartbeats", 0, -1) == [b"live"]
        await store.remove_scheduler("live")
        assert not await client.exists(f"{prefix}:schedulers", f"{prefix}:heartbeats")
    finally:
        await pubsub.aclose()
        await store.stop()


async def test_a_job_removed_while_leased_holds_no_lease_in_the_register(prefix: str) -> None:
    # Its hash keeps the lease fields until the release (see the test above), but the
    # lease is gone for the scheduler: its release will be refused.
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        await store.add_jobs([make_job("r", 1), make_job("k", 1)], replace=False)
        await store.heartbeat(scheduler_info("s", 1))
        assert len(await store.acquire_jobs("s", at(1), 10, 30)) == 2
        (info,) = await store.get_schedulers(at(2))
        assert info.job_leases == 2
        await store.remove_job("r")
        (info,) = await store.get_schedulers(at(2))
        assert info.job_leases == 1
        await store.remove_all_jobs()
        (info,) = await store.get_schedulers(at(2))
        assert info.job_leases == 0
    finally:
        await store.stop()


async def test_an_unreadable_scheduler_record_is_logged_and_left_out(
    client: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        info = scheduler_info("good", 5)
        await store.heartbeat(info)
        await client.hset(f"{prefix}:schedulers", mapping={"bad": "{not json", "old": "{}"})
        await client.zadd(f"{prefix}:heartbeats", {"bad": 0, "old": 0})
        with caplog.at_level(logging.ERROR, logger="horae.stores.redis"):
            assert await store.get_schedulers(at(6)) == [info]
        assert sorted(str(r.args[1]) for r in caplog.records if r.args) == ["bad", "old"]  # type: ignore[index]
        # Stale since 1970, the next heartbeat drops them.
        await store.heartbeat(info)
        assert await client.hkeys(f"{prefix}:schedulers") == [b"good"]
    finally:
        await store.stop()


async def _start_many(store: RedisStore, job_ids: Sequence[str], runs: Sequence[Run]) -> None:
    """Put ``runs`` in flight by releasing the leases of ``job_ids``, all due at 1."""
    leases = await store.acquire_jobs("s1", at(1), limit=len(job_ids), lease_duration=30)
    assert sorted(lease.job_id for lease in leases) == sorted(job_ids)
    releases = [
        Release(
            lease=lease,
            next_run_time=at(1000),
            started=[run for run in runs if run.job_id == lease.job_id],
        )
        for lease in leases
    ]
    assert not await store.release_jobs("s1", releases)


async def test_listings_are_one_command_per_thousand_jobs(client: Any, prefix: str) -> None:
    store = RedisStore(client, prefix=prefix)
    await store.start(context())
    try:
        ids = [f"job-{i:04d}" for i in range(1000)]
        await store.add_jobs([make_job(job_id, 1) for job_id in ids], replace=False)
        runs = [Run(job_id=job_id, scheduled_time=at(1), scheduler_id="s1") for job_id in ids]
        await _start_many(store, ids, runs)
        for run in runs[::2]:
            await store.finish_run(attrs.evolve(run, outcome=RunOutcome.SUCCESS))
        commands: list[object] = []
        original = client.execute_command

        async def counting(*args: Any, **options: Any) -> Any:
            commands.append(args[0])
            return await original(*args, **options)

        client.execute_command = counting
        assert await store.get_job_ids() == ids
        latest = await store.get_latest_runs([*ids, "nope"])
        assert [run.id for run in latest.values()] == [run.id for run in runs]
        assert [run.outcome for run in latest.values()] == [RunOutcome.SUCCESS, None] * 500
        assert await store.get_runs_in_flight(limit=3) == sorted(runs[1::2], key=_by_id)[:3]
        # 1,001 ids: two LATEST calls of at most 1,000 (a script holds the server).
        assert commands == ["EVALSHA"] * 4
    finally:
        await store.stop()


def _by_id(run: Run) -> str:
    return str(run.id)


async def test_runs_in_flight_sort_by_instant_whatever_their_time_zone(prefix: str) -> None:
    # The records keep each time's own UTC offset, so their text would sort 09:00 UTC
    # before 10:00 in Paris (09:00 UTC, on 1 January) and 10:30 in Kolkata (05:00 UTC).
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        await store.add_jobs([make_job("utc", 1), make_job("zoned", 1)], replace=False)
        utc = Run(job_id="utc", scheduled_time=at(9 * 3600), scheduler_id="s1")
        paris = Run(
            job_id="zoned",
            scheduled_time=at(10 * 3600).replace(tzinfo=ZoneInfo("Europe/Paris")),
            scheduler_id="s1",
        )
        kolkata = Run(
            job_id="zoned",
            scheduled_time=at(10.5 * 3600).replace(tzinfo=ZoneInfo("Asia/Kolkata")),
            scheduler_id="s1",
        )
        await _start_many(store, ["utc", "zoned"], [utc, paris, kolkata])
        assert await store.get_runs_in_flight() == [kolkata, *sorted([utc, paris], key=_by_id)]
        # The latest scheduled of the job's runs, as get_runs gives it first.
        assert await store.get_latest_runs(["zoned"]) == {"zoned": paris}
        assert (await store.get_runs("zoned", limit=1))[0] == paris
    finally:
        await store.stop()


async def test_runs_in_flight_at_the_same_time_list_as_get_runs_orders_them(prefix: str) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        await store.add_jobs([make_job("a", 1)], replace=False)
        runs = [Run(job_id="a", scheduled_time=at(1), scheduler_id="s1") for _ in range(5)]
        await _start_many(store, ["a"], runs)
        (first, *_) = await store.get_runs("a", limit=1)
        assert await store.get_latest_runs(["a"]) == {"a": first}
        assert await store.get_runs_in_flight() == sorted(runs, key=_by_id)
    finally:
        await store.stop()


async def test_listings_log_and_leave_out_runs_that_cannot_be_read(
    client: Any, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        await store.add_jobs([make_job(job_id, 1) for job_id in "abc"], replace=False)
        a1, a2 = (Run(job_id="a", scheduled_time=at(t), scheduler_id="s1") for t in (1, 2))
        b1 = Run(job_id="b", scheduled_time=at(1), scheduler_id="s1")
        c1 = Run(job_id="c", scheduled_time=at(1), scheduler_id="s1")
        await _start_many(store, "abc", [a1, a2, b1, c1])
        await store.finish_run(attrs.evolve(c1, outcome=RunOutcome.SUCCESS))
        await client.hset(f"{prefix}:inflight:a", str(a2.id), "{not json")
        await client.hset(f"{prefix}:inflight:b", str(b1.id), '{"id": "not a uuid"}')
        await client.lset(f"{prefix}:runs:c", 0, "[]")
        with caplog.at_level(logging.ERROR, logger="horae.stores.redis"):
            # a's readable run stands in for the unreadable one scheduled after it.
            assert await store.get_latest_runs(["a", "b", "c"]) == {"a": a1}
            assert await store.get_runs_in_flight() == [a1]
        assert len(caplog.records) == 5  # 3 by the latest runs, 2 by the runs in flight
        assert all("left out of a listing" in record.getMessage() for record in caplog.records)
    finally:
        await store.stop()


async def test_runs_in_flight_of_a_removed_job_are_read_from_its_kept_hash(
    client: Any, prefix: str
) -> None:
    store = RedisStore(REDIS_URL, prefix=prefix)
    await store.start(context())
    try:
        await store.add_jobs([make_job("gone", 1)], replace=False)
        run = await _start(store, "gone", 1, "s1")
        await store.remove_job("gone")
        assert await store.get_job_ids() == []
        assert await client.hexists(f"{prefix}:inflight:gone", str(run.id))
        assert await store.get_runs_in_flight() == [run]
        assert await store.get_latest_runs(["gone"]) == {"gone": run}
        await store.finish_run(attrs.evolve(run, outcome=RunOutcome.SUCCESS))
        assert await store.get_runs_in_flight() == []
        (finished,) = (await store.get_latest_runs(["gone"])).values()
        assert (finished.id, finished.outcome) == (run.id, RunOutcome.SUCCESS)
    finally:
        await store.stop()
