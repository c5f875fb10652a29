"""Conformance: listings for tools (the dashboard, the CLI), one round trip each.

``get_job_ids`` lists every job, unreadable ones too; ``get_latest_runs`` gives each
job's latest run for a page of jobs; ``get_runs_in_flight`` lists the runs going on,
whoever runs them. Every store must pass these.
"""

from __future__ import annotations

import importlib
import logging

import attrs
import pytest

from horae.errors import DeserializationError
from horae.jobs import Run, RunOutcome
from horae.stores.base import Release, Store

from .conftest import StoreFactory, context
from .helpers import at, make_job

pytestmark = pytest.mark.anyio


def _run(job_id: str, when: float, holder: str = "s1") -> Run:
    return Run(job_id=job_id, scheduled_time=at(when), scheduler_id=holder)


def _ended(run: Run, finished: float, outcome: RunOutcome = RunOutcome.SUCCESS) -> Run:
    return attrs.evolve(
        run, outcome=outcome, started_at=run.scheduled_time, finished_at=at(finished)
    )


async def _start(store: Store, job_id: str, when: float, count: int = 1) -> list[Run]:
    """Runs of ``job_id`` for the fire time ``when``, put in flight by a release (other
    jobs due then are given back as they were)."""
    leases = await store.acquire_jobs("s1", at(when), limit=100, lease_duration=30)
    assert job_id in {lease.job_id for lease in leases}
    runs = [_run(job_id, when) for _ in range(count)]
    releases = []
    for lease in leases:
        if lease.job_id == job_id:
            releases.append(Release(lease=lease, next_run_time=at(when + 10), started=runs))
        else:
            assert lease.job is not None
            releases.append(Release(lease=lease, next_run_time=lease.job.next_run_time))
    assert await store.release_jobs("s1", releases) == set()
    return runs


async def test_job_ids_are_every_job_sorted(store: Store) -> None:
    assert await store.get_job_ids() == []
    await store.add_jobs(
        [make_job("b", 10), make_job("a", None), make_job("c:é", 20), make_job("held", 10)],
        replace=False,
    )
    # Leased and held jobs are jobs all the same.
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    held_run = _run(lease.job_id, 10)
    await store.release_jobs(
        "s1",
        [Release(lease=lease, next_run_time=at(20), started=[held_run], hold_while_running=1)],
    )
    await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    assert await store.get_job_ids() == ["a", "b", "c:é", "held"]
    await store.remove_job("b")
    assert await store.get_job_ids() == ["a", "c:é", "held"]
    await store.remove_all_jobs()
    assert await store.get_job_ids() == []


async def test_job_ids_include_jobs_that_cannot_be_read(
    store: Store, store_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    module = importlib.import_module(f"tests.stores.target_{store_name}")
    corrupt = getattr(module, "corrupt", None)
    if corrupt is None:
        pytest.skip(f"the {store_name} store keeps objects, not rows to corrupt")
    await store.add_jobs([make_job("bad", 10), make_job("good", 10)], replace=False)
    await corrupt(store, "bad")
    with caplog.at_level(logging.DEBUG, logger="horae.stores"):
        for _ in range(3):  # a dashboard's refreshes
            assert [job.id for job in await store.get_jobs()] == ["good"]
    reports = [r for r in caplog.records if "'bad'" in r.getMessage()]
    assert [r.levelno for r in reports] == [logging.ERROR, logging.DEBUG, logging.DEBUG]
    assert await store.get_job_ids() == ["bad", "good"]
    with pytest.raises(DeserializationError):
        await store.get_job("bad")


async def test_latest_runs_of_many_jobs(store: Store) -> None:
    await store.add_jobs([make_job(j, 10 + i) for i, j in enumerate("abcd")], replace=False)
    assert await store.get_latest_runs([]) == {}
    assert await store.get_latest_runs(["a", "b", "nope"]) == {}
    # a: two finished runs, the newest wins.
    (a1,) = await _start(store, "a", 10)
    await store.finish_run(_ended(a1, 11, RunOutcome.ERROR))
    (a2,) = await _start(store, "a", 20)
    await store.finish_run(_ended(a2, 21))
    # b: a finished run, then one in flight: the one in flight wins.
    (b1,) = await _start(store, "b", 11)
    await store.finish_run(_ended(b1, 12))
    (b2,) = await _start(store, "b", 21)
    # c: in flight only.
    (c1,) = await _start(store, "c", 12)
    # d: nothing.
    latest = await store.get_latest_runs(["a", "b", "c", "d", "nope"])
    assert set(latest) == {"a", "b", "c"}
    assert latest["a"].id == a2.id
    assert latest["a"].outcome is RunOutcome.SUCCESS
    assert latest["a"].finished_at == at(21)
    assert latest["b"].id == b2.id
    assert latest["b"].outcome is None
    assert latest["c"].id == c1.id
    # The answer agrees with get_runs for each job.
    for job_id, run in latest.items():
        assert (await store.get_runs(job_id, limit=1))[0].id == run.id
    # Only the ids asked for.
    assert set(await store.get_latest_runs(["c"])) == {"c"}


async def test_latest_runs_of_a_removed_job_stay_readable(store: Store) -> None:
    # get_runs keeps a removed job's history readable; so does this.
    await store.add_jobs([make_job("gone", 10)], replace=False)
    (run,) = await _start(store, "gone", 10)
    await store.finish_run(_ended(run, 11))
    await store.remove_job("gone")
    latest = await store.get_latest_runs(["gone"])
    assert [r.id for r in latest.values()] == [r.id for r in await store.get_runs("gone", 1)]


async def test_latest_runs_for_a_page_of_many_ids(store: Store) -> None:
    ids = [f"job-{i:04d}" for i in range(300)]
    await store.add_jobs([make_job(j, 10) for j in ids], replace=False)
    leases = await store.acquire_jobs("s1", at(10), limit=300, lease_duration=30)
    runs = {lease.job_id: _run(lease.job_id, 10) for lease in leases}
    releases = [
        Release(lease=lease, next_run_time=at(20), started=[runs[lease.job_id]]) for lease in leases
    ]
    assert await store.release_jobs("s1", releases) == set()
    for job_id in ids[::2]:
        await store.finish_run(_ended(runs[job_id], 11))
    latest = await store.get_latest_runs(ids)
    assert len(latest) == 300
    assert {job_id: run.id for job_id, run in latest.items()} == {
        job_id: run.id for job_id, run in runs.items()
    }
    assert sum(run.outcome is None for run in latest.values()) == 150


async def test_runs_in_flight_of_every_job(store: Store) -> None:
    assert await store.get_runs_in_flight() == []
    await store.add_jobs([make_job("a", 10), make_job("b", 5)], replace=False)
    (b1,) = await _start(store, "b", 5)
    a_runs = await _start(store, "a", 10, count=2)
    in_flight = await store.get_runs_in_flight()
    assert [r.id for r in in_flight] == [b1.id, *sorted((r.id for r in a_runs), key=str)]
    assert in_flight[0] == b1
    assert [r.id for r in await store.get_runs_in_flight(limit=2)] == [r.id for r in in_flight[:2]]
    # A finished run leaves; a removed job's run in flight stays listed.
    await store.finish_run(_ended(b1, 6))
    await store.remove_job("a")
    assert {r.id for r in await store.get_runs_in_flight()} == {r.id for r in a_runs}


async def test_runs_in_flight_include_runs_taken_over(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (run,) = await _start(store, "a", 10)
    (claimed,) = await store.claim_expired_runs("s2", at(100), limit=5, lease_duration=30)
    assert claimed.id == run.id
    (listed,) = await store.get_runs_in_flight()
    assert listed.id == run.id
    assert listed.scheduler_id == "s1"  # as stored: who ran it


async def test_listings_are_shared_by_every_store_on_the_same_place(
    store: Store, store_factory: StoreFactory
) -> None:
    other = store_factory()
    await other.start(context("other"))
    try:
        await store.add_jobs([make_job("a", 10)], replace=False)
        (run,) = await _start(store, "a", 10)
        assert await other.get_job_ids() == ["a"]
        assert [r.id for r in await other.get_runs_in_flight()] == [run.id]
        assert [r.id for r in (await other.get_latest_runs(["a"])).values()] == [run.id]
    finally:
        await other.stop()


async def test_latest_runs_of_a_long_list_of_ids(store: Store) -> None:
    # Stores may split a long list (SQLite's parameter limit, Redis' script time): the
    # answer is the same whatever the split.
    await store.add_jobs([make_job(j, 10) for j in ("first", "middle", "last")], replace=False)
    leases = await store.acquire_jobs("s1", at(10), limit=3, lease_duration=30)
    runs = {lease.job_id: _run(lease.job_id, 10) for lease in leases}
    releases = [
        Release(lease=lease, next_run_time=at(20), started=[runs[lease.job_id]]) for lease in leases
    ]
    assert await store.release_jobs("s1", releases) == set()
    ids = [f"unknown-{i}" for i in range(2500)]
    ids[0], ids[1500], ids[2499] = "first", "middle", "last"
    latest = await store.get_latest_runs(ids)
    assert {job_id: run.id for job_id, run in latest.items()} == {
        job_id: run.id for job_id, run in runs.items()
    }


async def test_no_runs_in_flight_for_a_limit_below_one(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    await _start(store, "a", 10)
    assert await store.get_runs_in_flight(limit=0) == []
    assert await store.get_runs_in_flight(limit=-1) == []
