"""The register of schedulers: each scheduler writes its record (its heartbeat) when it
starts, renews it with its run leases, says when it is paused or stopping, and removes it
when it stops; ``get_schedulers`` lists the records. On a fake clock, on the memory store
and on SQLite (a fresh store instance on the same file reads what another wrote)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from horae import (
    AsyncScheduler,
    Event,
    JobExecuted,
    MemoryStore,
    Run,
    RunOutcome,
    Scheduler,
    SchedulerInfo,
    SchedulerNotRunningError,
    SQLiteStore,
    StoreFailed,
)
from horae._running import horae_version
from horae.stores.base import SCHEDULER_RECORD_KEEP, Release, Store, StoreContext
from horae.testing import FakeClock, wait_idle

from . import jobfuncs

pytestmark = pytest.mark.anyio

LEASE = 30.0
StoreFactory = Callable[[], Store]


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """New store instances on one place: the same memory store, or one SQLite file."""
    if request.param == "memory":
        shared = MemoryStore()
        return lambda: shared
    path = tmp_path / "jobs.db"
    return lambda: SQLiteStore(path)


async def read_register(stores: StoreFactory, now: datetime) -> list[SchedulerInfo]:
    """The records as a store instance of its own reads them (nothing else running)."""
    store = stores()
    await store.start(
        StoreContext(scheduler_id="reader", wakeup=lambda: None, publish=lambda e: None)
    )
    try:
        return await store.get_schedulers(now)
    finally:
        await store.stop()


def scheduler_on(
    store: Store, clock: FakeClock, scheduler_id: str, **options: Any
) -> AsyncScheduler:
    return AsyncScheduler(
        store,
        clock=clock,
        scheduler_id=scheduler_id,
        lease_duration=LEASE,
        timezone="UTC",
        **options,
    )


async def test_registered_at_start_with_its_fields(stores: StoreFactory, clock: FakeClock) -> None:
    start = clock.now()
    async with scheduler_on(stores(), clock, "s1") as scheduler:
        (info,) = await scheduler.get_schedulers()
        assert info == SchedulerInfo(
            id="s1",
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=start,
            heartbeat_at=start,
            expires_at=start + timedelta(seconds=LEASE),
            state="running",
            version=horae_version(),
        )
        assert info.alive(clock.now())
    assert horae_version() != ""  # installed in the test environment: read from its metadata


async def test_renewed_every_third_of_a_lease(stores: StoreFactory, clock: FakeClock) -> None:
    start = clock.now()
    async with scheduler_on(stores(), clock, "s1") as scheduler:
        await wait_idle(scheduler)  # the lease keeper's first round, at the start
        clock.advance(LEASE / 3 - 1)
        await wait_idle(scheduler)
        (info,) = await scheduler.get_schedulers()
        assert info.heartbeat_at == start  # not yet
        clock.advance(1)
        await wait_idle(scheduler)
        (info,) = await scheduler.get_schedulers()
        assert info.heartbeat_at == start + timedelta(seconds=LEASE / 3)
        assert info.expires_at == info.heartbeat_at + timedelta(seconds=LEASE)
        assert info.started_at == start
        for _ in range(6):  # two more leases: it never goes stale while it runs
            clock.advance(LEASE / 3)
            await wait_idle(scheduler)
        (info,) = await scheduler.get_schedulers()
        assert info.heartbeat_at == start + timedelta(seconds=7 * LEASE / 3)
        assert info.alive(clock.now())


async def test_pause_and_resume_are_written_at_once(stores: StoreFactory, clock: FakeClock) -> None:
    start = clock.now()
    async with scheduler_on(stores(), clock, "s1") as scheduler:
        await wait_idle(scheduler)
        clock.advance(2)
        await wait_idle(scheduler)
        await scheduler.pause()
        await wait_idle(scheduler)
        (info,) = await scheduler.get_schedulers()
        assert (info.state, info.heartbeat_at) == ("paused", start + timedelta(seconds=2))
        # The renewals keep their rhythm: the next heartbeat comes a third of a lease
        # after the start, still paused.
        clock.advance(LEASE / 3 - 2)
        await wait_idle(scheduler)
        (info,) = await scheduler.get_schedulers()
        assert (info.state, info.heartbeat_at) == ("paused", start + timedelta(seconds=LEASE / 3))
        clock.advance(1)
        await scheduler.resume()
        await wait_idle(scheduler)
        (info,) = await scheduler.get_schedulers()
        assert info.state == "running"
        assert info.heartbeat_at == start + timedelta(seconds=LEASE / 3 + 1)


async def test_removed_when_it_stops(stores: StoreFactory, clock: FakeClock) -> None:
    async with scheduler_on(stores(), clock, "s1") as scheduler:
        assert [info.id for info in await read_register(stores, clock.now())] == ["s1"]
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1], id="j")
        clock.advance(5)
        await wait_idle(scheduler)
    assert await read_register(stores, clock.now()) == []


async def test_removed_when_it_is_cancelled(clock: FakeClock) -> None:
    store = MemoryStore()
    with anyio.CancelScope() as scope:
        async with scheduler_on(store, clock, "s1"):
            assert len(await store.get_schedulers(clock.now())) == 1
            scope.cancel()
            await anyio.sleep_forever()
    assert await store.get_schedulers(clock.now()) == []


async def test_stopping_while_runs_finish(clock: FakeClock) -> None:
    store = MemoryStore()
    release = anyio.Event()
    started = anyio.Event()

    async def slow() -> None:
        started.set()
        await release.wait()

    async with scheduler_on(store, clock, "s1") as scheduler:
        await scheduler.add_job(slow, id="slow")
        with anyio.fail_after(5):
            await started.wait()
        (info,) = await scheduler.get_schedulers()
        assert (info.state, info.run_leases) == ("running", 1)
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.shutdown)
            # Not wait_idle(): a stopping scheduler with a run in progress is never idle.
            await anyio.wait_all_tasks_blocked()
            (info,) = await store.get_schedulers(clock.now())
            assert info.state == "stopping"
            release.set()
    assert await store.get_schedulers(clock.now()) == []


async def test_two_schedulers_see_each_other(stores: StoreFactory, clock: FakeClock) -> None:
    async with (
        scheduler_on(stores(), clock, "s1") as first,
        scheduler_on(stores(), clock, "s2") as second,
    ):
        assert [info.id for info in await first.get_schedulers()] == ["s1", "s2"]
        assert [info.id for info in await second.get_schedulers()] == ["s1", "s2"]
    assert await read_register(stores, clock.now()) == []


async def test_the_leases_each_scheduler_holds_are_counted(clock: FakeClock) -> None:
    store = MemoryStore()
    release = anyio.Event()

    async def slow() -> None:
        await release.wait()

    async with scheduler_on(store, clock, "s1") as scheduler:
        async with scheduler.subscribe(JobExecuted) as executed:
            await scheduler.add_job(slow, id="a")
            await scheduler.add_job(slow, id="b")
            await anyio.wait_all_tasks_blocked()  # both started (wait_idle waits for runs)
            (info,) = await scheduler.get_schedulers()
            assert (info.job_leases, info.run_leases) == (0, 2)
            release.set()
            with anyio.fail_after(5):
                await executed.__anext__()
                await executed.__anext__()
        (info,) = await scheduler.get_schedulers()
        assert (info.job_leases, info.run_leases) == (0, 0)


async def test_a_client_does_not_register(stores: StoreFactory, clock: FakeClock) -> None:
    async with scheduler_on(stores(), clock, "client", role="client") as client:
        assert await client.get_schedulers() == []
        async with scheduler_on(stores(), clock, "worker"):
            assert [info.id for info in await client.get_schedulers()] == ["worker"]
        assert await client.get_schedulers() == []


async def test_get_schedulers_needs_a_started_scheduler(clock: FakeClock) -> None:
    scheduler = scheduler_on(MemoryStore(), clock, "s1")
    with pytest.raises(SchedulerNotRunningError, match="start the scheduler first"):
        await scheduler.get_schedulers()
    async with scheduler:
        pass
    with pytest.raises(SchedulerNotRunningError, match="shut down"):
        await scheduler.get_schedulers()


class _FailingHeartbeats(MemoryStore):
    async def heartbeat(self, info: SchedulerInfo) -> None:
        raise OSError("the register is on fire")


async def test_a_failing_heartbeat_stops_neither_the_scheduler_nor_its_jobs(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Nor its takeover of a dead scheduler's runs, and it is no store outage: the
    # register only informs.
    failures: list[Event] = []
    jobfuncs.calls.clear()
    store = _FailingHeartbeats()
    async with scheduler_on(store, clock, "dead") as dead:
        await dead.add_job(jobfuncs.async_add, "date", run_date=clock.now(), args=[1], id="o")
    (lease,) = await store.acquire_jobs("dead", clock.now(), limit=1, lease_duration=LEASE)
    orphan = Run(job_id="o", scheduled_time=clock.now(), scheduler_id="dead")
    await store.release_jobs("dead", [Release(lease=lease, next_run_time=None, started=[orphan])])
    with caplog.at_level(logging.WARNING, logger="horae.scheduler"):
        async with scheduler_on(store, clock, "s1") as scheduler:
            scheduler.add_listener(failures.append, StoreFailed.code)
            await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[7], id="j")
            for _ in range(8):
                clock.advance(10)
                await wait_idle(scheduler)
            assert scheduler.running
            assert await scheduler.get_schedulers() == []
            (taken_over,) = await scheduler.get_runs("o")
    assert jobfuncs.calls.count(("async_add", 7, 0)) == 8
    assert taken_over.id == orphan.id
    assert taken_over.outcome is RunOutcome.ABANDONED
    warnings = [
        r
        for r in caplog.records
        if "could not write its heartbeat" in r.getMessage() and "s1" in r.getMessage()
    ]
    assert len(warnings) == 1  # once, not at every round
    assert "the register is on fire" in warnings[0].getMessage()
    assert failures == []


async def test_a_pause_during_a_heartbeat_is_written_at_once(clock: FakeClock) -> None:
    # pause() wakes the keeper through an event that the round in progress no longer
    # waits on: the next round must notice the state it has not written.
    entered = anyio.Event()
    proceed = anyio.Event()

    class SlowBeat(MemoryStore):
        slow = False

        async def heartbeat(self, info: SchedulerInfo) -> None:
            if self.slow:
                self.slow = False
                entered.set()
                await proceed.wait()
            await super().heartbeat(info)

    store = SlowBeat()
    async with scheduler_on(store, clock, "s1") as scheduler:
        store.slow = True
        clock.advance(LEASE / 3)
        await entered.wait()
        await scheduler.pause()
        proceed.set()
        await wait_idle(scheduler)
        (info,) = await store.get_schedulers(clock.now())
        assert info.state == "paused"


class _NoRegister(MemoryStore):
    """A store written before the register existed: it has no heartbeat method."""

    heartbeat = None  # type: ignore[assignment]


async def test_a_store_without_a_register_still_runs_jobs(clock: FakeClock) -> None:
    jobfuncs.calls.clear()
    async with scheduler_on(cast(Store, _NoRegister()), clock, "s1") as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[8], id="j")
        for _ in range(4):
            clock.advance(10)
            await wait_idle(scheduler)
        await scheduler.pause()
        await wait_idle(scheduler)
    assert jobfuncs.calls.count(("async_add", 8, 0)) == 4


class _Muted(MemoryStore):
    """Drops the heartbeats of the schedulers in ``muted`` (as if they hung)."""

    def __init__(self) -> None:
        super().__init__()
        self.muted: set[str] = set()

    async def heartbeat(self, info: SchedulerInfo) -> None:
        if info.id not in self.muted:
            await super().heartbeat(info)


async def test_a_record_no_longer_renewed_reads_as_silent_then_goes(clock: FakeClock) -> None:
    store = _Muted()
    start = clock.now()
    async with (
        scheduler_on(store, clock, "alive") as alive,
        scheduler_on(store, clock, "hung"),
    ):
        store.muted.add("hung")
        for _ in range(4):
            clock.advance(LEASE / 3)
            await wait_idle(alive)
        now = clock.now()
        infos = {info.id: info for info in await alive.get_schedulers()}
        assert infos["alive"].alive(now)
        assert not infos["hung"].alive(now)
        assert infos["hung"].heartbeat_at == start
        # Kept a day after it went stale (at start + LEASE), for whoever investigates;
        # then dropped by the next heartbeat of another scheduler.
        clock.set(start + timedelta(seconds=LEASE + SCHEDULER_RECORD_KEEP - 5))
        await wait_idle(alive)
        assert [info.id for info in await alive.get_schedulers()] == ["alive", "hung"]
        clock.advance(LEASE / 3)
        await wait_idle(alive)
        assert [info.id for info in await alive.get_schedulers()] == ["alive"]
        store.muted.clear()


def test_the_sync_facade_lists_schedulers() -> None:
    store = MemoryStore()
    with Scheduler(store, scheduler_id="sync-1") as scheduler:
        (info,) = scheduler.get_schedulers()
        assert (info.id, info.state, info.pid) == ("sync-1", "running", os.getpid())
        with Scheduler(store, role="client") as client:
            assert [info.id for info in client.get_schedulers()] == ["sync-1"]
    assert store._schedulers == {}
