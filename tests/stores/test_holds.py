"""Conformance: jobs held until a run of theirs ends, and the count of runs started.

A job whose overlap policy buffers fire times (``buffer_one``, ``buffer_all``,
``cancel_other``) is released with ``hold_while_running``: while its in-flight runs fill
its slots, nobody may acquire it; the run that ends frees it, whichever scheduler ends
it. ``Lease.run_count`` is what ``max_runs`` counts. Every store must pass these.
"""

from __future__ import annotations

import anyio
import attrs
import pytest

from horae.jobs import Run, RunOutcome
from horae.stores.base import Release, Store, StoreContext

from .conftest import StoreFactory
from .helpers import at, make_job

pytestmark = pytest.mark.anyio


def _run(job_id: str, when: float, holder: str = "s1") -> Run:
    return Run(job_id=job_id, scheduled_time=at(when), scheduler_id=holder)


def _ended(run: Run, finished: float) -> Run:
    return attrs.evolve(
        run, outcome=RunOutcome.SUCCESS, started_at=run.scheduled_time, finished_at=at(finished)
    )


async def test_a_held_job_is_not_handed_out_until_its_run_ends(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    run = _run("a", 10)
    release = Release(lease=lease, next_run_time=at(20), started=[run], hold_while_running=1)
    assert await store.release_jobs("s1", [release]) == set()
    # Held: its next run time stays (the fire time that waits), but nobody gets it, and
    # nobody is told to wake up for it.
    assert (await store.get_job("a")).next_run_time == at(20)
    assert await store.next_run_time() is None
    assert await store.acquire_jobs("s2", at(1000), limit=10, lease_duration=30) == []
    await store.finish_run(_ended(run, 25))
    assert await store.next_run_time() == at(20)
    (again,) = await store.acquire_jobs("s2", at(25), limit=10, lease_duration=30)
    assert again.job_id == "a"
    assert again.running == 0
    assert again.job is not None
    assert again.job.next_run_time == at(20)


async def test_a_job_is_held_only_while_its_slots_are_full(store: Store) -> None:
    await store.add_jobs([make_job("a", 10), make_job("b", 10)], replace=False)
    leases = await store.acquire_jobs("s1", at(10), limit=2, lease_duration=30)
    by_id = {lease.job_id: lease for lease in leases}
    releases = [
        # One run in flight, two slots: not held.
        Release(
            lease=by_id["a"], next_run_time=at(20), started=[_run("a", 10)], hold_while_running=2
        ),
        # Nothing started, nothing in flight: not held.
        Release(lease=by_id["b"], next_run_time=at(20), hold_while_running=1),
    ]
    assert await store.release_jobs("s1", releases) == set()
    assert await store.next_run_time() == at(20)
    acquired = await store.acquire_jobs("s1", at(20), limit=10, lease_duration=30)
    assert sorted(lease.job_id for lease in acquired) == ["a", "b"]


async def test_a_run_that_ended_before_the_release_does_not_leave_its_job_held(
    store: Store,
) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (first,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    run = _run("a", 10)
    await store.release_jobs("s1", [Release(lease=first, next_run_time=at(20), started=[run])])
    (second,) = await store.acquire_jobs("s1", at(20), limit=1, lease_duration=30)
    assert second.running == 1
    # The run ends between the acquisition (which counted it) and the release.
    await store.finish_run(_ended(run, 21))
    release = Release(lease=second, next_run_time=at(20), hold_while_running=1)
    assert await store.release_jobs("s1", [release]) == set()
    assert await store.next_run_time() == at(20)
    acquired = await store.acquire_jobs("s1", at(22), limit=10, lease_duration=30)
    assert [lease.job_id for lease in acquired] == ["a"]


async def test_a_retry_keeps_its_job_held_and_its_end_frees_it(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    run = _run("a", 10)
    await store.release_jobs(
        "s1", [Release(lease=lease, next_run_time=at(20), started=[run], hold_while_running=1)]
    )
    failed = attrs.evolve(_ended(run, 12), outcome=RunOutcome.ERROR, error="boom")
    retry = Run(job_id="a", scheduled_time=at(10), scheduler_id="s1", attempt=2)
    await store.finish_run(failed, retry=retry, expires_at=at(50))
    assert await store.next_run_time() is None
    assert await store.acquire_jobs("s1", at(100), limit=10, lease_duration=30) == []
    await store.finish_run(_ended(retry, 30))
    assert await store.next_run_time() == at(20)


async def test_updating_or_replacing_a_held_job_frees_it(store: Store) -> None:
    await store.add_jobs([make_job("a", 10), make_job("b", 10)], replace=False)
    leases = await store.acquire_jobs("s1", at(10), limit=2, lease_duration=30)
    releases = [
        Release(
            lease=lease,
            next_run_time=at(20),
            started=[_run(lease.job_id, 10)],
            hold_while_running=1,
        )
        for lease in leases
    ]
    await store.release_jobs("s1", releases)
    assert await store.next_run_time() is None
    job_a = await store.get_job("a")
    await store.update_job(attrs.evolve(job_a, name="renamed", next_run_time=at(30)))
    await store.add_jobs([make_job("b", 40)], replace=True)
    assert await store.next_run_time() == at(30)
    acquired = await store.acquire_jobs("s1", at(40), limit=10, lease_duration=30)
    assert sorted(lease.job_id for lease in acquired) == ["a", "b"]
    assert all(lease.running == 1 for lease in acquired)


async def test_a_paused_job_is_not_held(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    run = _run("a", 10)
    await store.release_jobs(
        "s1", [Release(lease=lease, next_run_time=None, started=[run], hold_while_running=1)]
    )
    await store.finish_run(_ended(run, 11))
    assert (await store.get_job("a")).next_run_time is None
    assert await store.next_run_time() is None
    # Resuming it works as for any paused job.
    await store.update_job(attrs.evolve(await store.get_job("a"), next_run_time=at(50)))
    assert await store.next_run_time() == at(50)


async def test_the_end_of_a_run_frees_its_job_for_other_schedulers(
    store_factory: StoreFactory,
) -> None:
    woken = [anyio.Event()]
    mine = store_factory()
    other = store_factory()
    await mine.start(StoreContext(scheduler_id="mine", wakeup=lambda: None, publish=lambda e: None))
    await other.start(
        StoreContext(scheduler_id="other", wakeup=lambda: woken[-1].set(), publish=lambda e: None)
    )
    try:
        await mine.add_jobs([make_job("a", 10)], replace=False)
        (lease,) = await mine.acquire_jobs("mine", at(10), limit=1, lease_duration=30)
        run = _run("a", 10, "mine")
        await mine.release_jobs(
            "mine",
            [Release(lease=lease, next_run_time=at(20), started=[run], hold_while_running=1)],
        )
        # Whatever the store told the other scheduler so far (the job was added) is
        # not what this test waits for.
        with anyio.fail_after(5):
            await woken[-1].wait()
        woken.append(anyio.Event())
        await mine.finish_run(_ended(run, 30))
        with anyio.fail_after(5):
            await woken[-1].wait()
        assert [lease.job_id for lease in await other.acquire_jobs("other", at(30), 10, 30)] == [
            "a"
        ]
    finally:
        await other.stop()
        await mine.stop()


async def test_run_count_counts_started_runs_across_schedulers(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    assert lease.run_count == 0
    runs = [_run("a", 10), _run("a", 11)]
    await store.release_jobs("s1", [Release(lease=lease, next_run_time=at(20), started=runs)])
    (lease,) = await store.acquire_jobs("s2", at(20), limit=1, lease_duration=30)
    assert lease.run_count == 2
    missed = attrs.evolve(_run("a", 20, "s2"), outcome=RunOutcome.MISSED, finished_at=at(20))
    # Runs that ended without starting do not count; nor do retries.
    await store.release_jobs("s2", [Release(lease=lease, next_run_time=at(30), finished=[missed])])
    retry = Run(job_id="a", scheduled_time=at(10), scheduler_id="s1", attempt=2)
    failed = attrs.evolve(_ended(runs[0], 12), outcome=RunOutcome.ERROR)
    await store.finish_run(failed, retry=retry, expires_at=at(100))
    (lease,) = await store.acquire_jobs("s1", at(30), limit=1, lease_duration=30)
    assert lease.run_count == 2
    await store.release_jobs(
        "s1", [Release(lease=lease, next_run_time=at(40), started=[_run("a", 30)])]
    )
    # Kept when the job is changed or replaced.
    await store.update_job(attrs.evolve(await store.get_job("a"), name="x"))
    await store.add_jobs([make_job("a", 40)], replace=True)
    (lease,) = await store.acquire_jobs("s1", at(40), limit=1, lease_duration=30)
    assert lease.run_count == 3
    await store.release_jobs("s1", [Release(lease=lease, next_run_time=None, remove=True)])
    # A job removed and added again starts from zero.
    await store.add_jobs([make_job("a", 50)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(50), limit=1, lease_duration=30)
    assert lease.run_count == 0
    await store.release_jobs("s1", [Release(lease=lease, next_run_time=at(60))])
    await store.remove_job("a")
    await store.add_jobs([make_job("a", 60)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(60), limit=1, lease_duration=30)
    assert lease.run_count == 0


async def test_runs_started_by_a_job_removed_while_leased_are_not_counted(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    await store.remove_job("a")
    await store.release_jobs(
        "s1", [Release(lease=lease, next_run_time=at(20), started=[_run("a", 10)])]
    )
    await store.add_jobs([make_job("a", 30)], replace=False)
    (again,) = await store.acquire_jobs("s1", at(30), limit=1, lease_duration=30)
    assert again.run_count == 0


async def test_a_release_of_a_job_removed_while_leased_is_refused(store: Store) -> None:
    # Whoever removed it (the user, or the scheduler that took the job over and found
    # its trigger ended) decided: none of the stale release's runs start.
    await store.add_jobs([make_job("a", 10), make_job("b", 10)], replace=False)
    leases = {lease.job_id: lease for lease in await store.acquire_jobs("s1", at(10), 10, 30)}
    await store.remove_job("a")
    await store.remove_all_jobs()
    releases = [
        Release(lease=leases[job_id], next_run_time=at(20), started=[_run(job_id, 10)])
        for job_id in ("a", "b")
    ]
    assert await store.release_jobs("s1", releases) == {"a", "b"}
    assert await store.get_runs("a") == []
    assert await store.claim_expired_runs("s2", at(100), limit=10, lease_duration=30) == []
    assert await store.get_jobs() == []
    assert await store.next_run_time() is None
