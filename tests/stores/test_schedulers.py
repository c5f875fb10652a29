"""Conformance: the register of schedulers sharing a store, kept by their heartbeats.

Every running scheduler writes a :class:`SchedulerInfo` record (``heartbeat``), renews it,
and removes it when it stops (``remove_scheduler``). ``get_schedulers`` lists the
records, stale ones too until they are dropped, with the job leases and in-flight runs
each scheduler holds counted at the time asked. Every store must pass these.
"""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from horae.jobs import Run, RunOutcome
from horae.stores.base import SCHEDULER_RECORD_KEEP, Release, SchedulerInfo, Store

from .conftest import StoreFactory, context
from .helpers import at, make_job, scheduler_info

pytestmark = pytest.mark.anyio


def _by_id(infos: list[SchedulerInfo]) -> dict[str, SchedulerInfo]:
    return {info.id: info for info in infos}


async def test_no_scheduler_no_record(store: Store) -> None:
    assert await store.get_schedulers(at(0)) == []


async def test_a_heartbeat_is_read_back_as_written(store: Store) -> None:
    info = scheduler_info("s1", 5)
    await store.heartbeat(info)
    assert await store.get_schedulers(at(6)) == [info]


async def test_a_heartbeat_replaces_the_record(store: Store) -> None:
    await store.heartbeat(scheduler_info("s1", 5))
    newer = scheduler_info("s1", 15, state="paused", pid=4243)
    await store.heartbeat(newer)
    assert await store.get_schedulers(at(16)) == [newer]


async def test_lease_counts_in_a_heartbeat_are_not_stored(store: Store) -> None:
    await store.heartbeat(scheduler_info("s1", 5, job_leases=7, run_leases=3))
    (info,) = await store.get_schedulers(at(6))
    assert (info.job_leases, info.run_leases) == (0, 0)


async def test_schedulers_are_listed_by_id(store: Store) -> None:
    for sid in ("s3", "s1", "s2"):
        await store.heartbeat(scheduler_info(sid, 5))
    assert [info.id for info in await store.get_schedulers(at(6))] == ["s1", "s2", "s3"]


async def test_ids_with_any_characters(store: Store) -> None:
    odd = ["host:1:ab", "ünï cödé", "a'b\"c;--", "x" * 200, "{braces}*?"]
    for sid in odd:
        await store.heartbeat(scheduler_info(sid, 5))
    assert sorted(odd) == [info.id for info in await store.get_schedulers(at(6))]
    await store.remove_scheduler(odd[1])
    assert odd[1] not in _by_id(await store.get_schedulers(at(6)))


async def test_a_stopping_scheduler_removes_its_record(store: Store) -> None:
    await store.heartbeat(scheduler_info("s1", 5))
    await store.heartbeat(scheduler_info("s2", 5))
    await store.remove_scheduler("s1")
    assert [info.id for info in await store.get_schedulers(at(6))] == ["s2"]
    await store.remove_scheduler("s1")  # gone already: nothing happens
    await store.remove_scheduler("never-there")
    assert [info.id for info in await store.get_schedulers(at(6))] == ["s2"]


async def test_a_stale_record_stays_listed_then_is_dropped(store: Store) -> None:
    await store.heartbeat(scheduler_info("dead", 5, ttl=30))
    # Silent since at(35): listed, and not alive.
    (info,) = await store.get_schedulers(at(100))
    assert info.id == "dead"
    assert not info.alive(at(100))
    assert info.alive(at(34))
    # Another scheduler's heartbeat within the keep time drops nothing.
    keep = SCHEDULER_RECORD_KEEP
    await store.heartbeat(scheduler_info("live", 35 + keep - 1))
    assert {i.id for i in await store.get_schedulers(at(35 + keep))} == {"dead", "live"}
    # One past it drops the dead one.
    await store.heartbeat(scheduler_info("live", 35 + keep + 1))
    assert [i.id for i in await store.get_schedulers(at(35 + keep + 2))] == ["live"]


async def test_job_leases_are_counted_per_scheduler(store: Store) -> None:
    await store.add_jobs([make_job(f"j{i}", 10) for i in range(3)], replace=False)
    await store.heartbeat(scheduler_info("s1", 5))
    await store.heartbeat(scheduler_info("s2", 5))
    leases = await store.acquire_jobs("s1", at(10), limit=2, lease_duration=30)
    assert len(leases) == 2
    (other,) = await store.acquire_jobs("s2", at(10), limit=5, lease_duration=60)
    infos = _by_id(await store.get_schedulers(at(20)))
    assert (infos["s1"].job_leases, infos["s2"].job_leases) == (2, 1)
    # s1's leases have expired at at(45): they are not held any more.
    infos = _by_id(await store.get_schedulers(at(45)))
    assert (infos["s1"].job_leases, infos["s2"].job_leases) == (0, 1)
    # A released job is not leased.
    await store.release_jobs("s2", [Release(lease=other, next_run_time=at(100))])
    infos = _by_id(await store.get_schedulers(at(20)))
    assert infos["s2"].job_leases == 0


async def test_runs_in_flight_are_counted_per_holder(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    await store.heartbeat(scheduler_info("s1", 5))
    await store.heartbeat(scheduler_info("s2", 5))
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    runs = [Run(job_id="a", scheduled_time=at(10), scheduler_id="s1") for _ in range(2)]
    await store.release_jobs("s1", [Release(lease=lease, next_run_time=at(20), started=runs)])
    infos = _by_id(await store.get_schedulers(at(15)))
    assert (infos["s1"].job_leases, infos["s1"].run_leases) == (0, 2)
    assert infos["s2"].run_leases == 0
    # Run leases ran out at at(40); s2 takes one over.
    (claimed,) = await store.claim_expired_runs("s2", at(41), limit=1, lease_duration=30)
    infos = _by_id(await store.get_schedulers(at(42)))
    assert (infos["s1"].run_leases, infos["s2"].run_leases) == (0, 1)
    # Renewed by s1: counted again.
    await store.extend_runs("s1", [r.id for r in runs if r.id != claimed.id], at(100))
    infos = _by_id(await store.get_schedulers(at(42)))
    assert (infos["s1"].run_leases, infos["s2"].run_leases) == (1, 1)
    # A finished run is not held by anyone.
    done = attrs.evolve(
        claimed, outcome=RunOutcome.ABANDONED, started_at=at(10), finished_at=at(41)
    )
    await store.finish_run(done)
    infos = _by_id(await store.get_schedulers(at(42)))
    assert (infos["s1"].run_leases, infos["s2"].run_leases) == (1, 0)


async def test_records_are_shared_by_every_store_on_the_same_place(
    store: Store, store_factory: StoreFactory
) -> None:
    other = store_factory()
    await other.start(context("other"))
    try:
        info = scheduler_info("s1", 5)
        await store.heartbeat(info)
        assert await other.get_schedulers(at(6)) == [info]
        await other.remove_scheduler("s1")
        assert await store.get_schedulers(at(6)) == []
    finally:
        await other.stop()


async def test_times_keep_their_microseconds(store: Store) -> None:
    info = scheduler_info("s1", 5)
    info = attrs.evolve(
        info,
        started_at=info.started_at + timedelta(microseconds=123456),
        heartbeat_at=info.heartbeat_at + timedelta(microseconds=654321),
        expires_at=info.expires_at + timedelta(microseconds=1),
    )
    await store.heartbeat(info)
    assert await store.get_schedulers(at(6)) == [info]
