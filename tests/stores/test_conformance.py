"""The one store conformance suite: every protocol operation, on every store."""

from __future__ import annotations

import attrs
import pytest

from horae import ConflictingIdError, JobLookupError, Run, RunOutcome
from horae.stores.base import Release, Store

from .helpers import at, make_job

pytestmark = pytest.mark.anyio


async def test_add_get_list_remove(store: Store) -> None:
    await store.add_jobs([make_job("b", 20), make_job("a", 10), make_job("p", None)], replace=False)
    assert (await store.get_job("a")).next_run_time == at(10)
    assert [j.id for j in await store.get_jobs()] == ["a", "b", "p"]
    with pytest.raises(ConflictingIdError):
        await store.add_jobs([make_job("a", 5)], replace=False)
    await store.add_jobs([make_job("a", 5)], replace=True)
    assert (await store.get_job("a")).next_run_time == at(5)
    await store.remove_job("a")
    with pytest.raises(JobLookupError):
        await store.get_job("a")
    with pytest.raises(JobLookupError):
        await store.remove_job("a")
    await store.remove_all_jobs()
    assert await store.get_jobs() == []


async def test_duplicate_ids_in_one_batch_are_refused(store: Store) -> None:
    with pytest.raises(ConflictingIdError):
        await store.add_jobs([make_job("x", 1), make_job("x", 2)], replace=False)


async def test_update_job(store: Store) -> None:
    await store.add_jobs([make_job("u", 10)], replace=False)
    job = await store.get_job("u")
    await store.update_job(attrs.evolve(job, name="renamed", next_run_time=at(30)))
    assert (await store.get_job("u")).name == "renamed"
    assert await store.next_run_time() == at(30)
    with pytest.raises(JobLookupError):
        await store.update_job(make_job("ghost", 1))


async def test_next_run_time_skips_paused(store: Store) -> None:
    assert await store.next_run_time() is None
    await store.add_jobs(
        [make_job("p", None), make_job("late", 50), make_job("soon", 20)], replace=False
    )
    assert await store.next_run_time() == at(20)
    await store.remove_job("soon")
    assert await store.next_run_time() == at(50)


async def test_acquire_leases_due_jobs_once(store: Store) -> None:
    await store.add_jobs([make_job(str(i), i) for i in range(10)], replace=False)
    first = await store.acquire_jobs("s1", at(5), limit=3, lease_duration=30)
    assert [lease.job_id for lease in first] == ["0", "1", "2"]
    assert len({lease.token for lease in first}) == 3
    second = await store.acquire_jobs("s2", at(5), limit=10, lease_duration=30)
    assert [lease.job_id for lease in second] == ["3", "4", "5"]  # not 0..2 again, not 6+
    assert await store.acquire_jobs("s3", at(5), limit=10, lease_duration=30) == []
    # A leased job is not "next" for anyone.
    assert await store.next_run_time() == at(6)


async def test_release_sets_next_run_time_and_records_runs(store: Store) -> None:
    await store.add_jobs([make_job("r", 10, max_instances=2)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=10, lease_duration=30)
    assert lease.running == 0
    started = Run(job_id="r", scheduled_time=at(10), scheduler_id="s1")
    missed = Run(
        job_id="r",
        scheduled_time=at(0),
        outcome=RunOutcome.MISSED,
        finished_at=at(10),
        scheduler_id="s1",
    )
    await store.release_jobs(
        "s1", [Release(lease=lease, next_run_time=at(20), started=[started], finished=[missed])]
    )
    assert (await store.get_job("r")).next_run_time == at(20)
    runs = await store.get_runs("r")
    assert [(r.scheduled_time, r.outcome) for r in runs] == [
        (at(10), None),
        (at(0), RunOutcome.MISSED),
    ]
    # The run in flight counts for max_instances on the next acquisition.
    (lease,) = await store.acquire_jobs("s2", at(20), limit=10, lease_duration=30)
    assert lease.running == 1
    await store.release_jobs("s2", [Release(lease=lease, next_run_time=at(30))])
    finished = Run(
        id=started.id,
        job_id="r",
        scheduled_time=at(10),
        started_at=at(10),
        finished_at=at(11),
        outcome=RunOutcome.SUCCESS,
        result=3,
        scheduler_id="s1",
    )
    await store.finish_run(finished)
    (lease,) = await store.acquire_jobs("s2", at(30), limit=10, lease_duration=30)
    assert lease.running == 0
    runs = await store.get_runs("r")
    assert runs[0].outcome is RunOutcome.SUCCESS
    assert runs[0].result == 3


async def test_release_with_remove_deletes_the_job(store: Store) -> None:
    await store.add_jobs([make_job("done", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=10, lease_duration=30)
    await store.release_jobs("s1", [Release(lease=lease, next_run_time=None, remove=True)])
    with pytest.raises(JobLookupError):
        await store.get_job("done")


async def test_expired_lease_can_be_taken_over_and_stale_release_is_ignored(store: Store) -> None:
    await store.add_jobs([make_job("e", 10)], replace=False)
    (stale,) = await store.acquire_jobs("s1", at(10), limit=10, lease_duration=5)
    assert await store.acquire_jobs("s2", at(14), limit=10, lease_duration=5) == []
    (fresh,) = await store.acquire_jobs("s2", at(16), limit=10, lease_duration=5)
    assert fresh.token > stale.token
    # The first scheduler comes back late: its release must not overwrite the new owner's.
    await store.release_jobs("s1", [Release(lease=stale, next_run_time=at(99))])
    await store.release_jobs("s2", [Release(lease=fresh, next_run_time=at(20))])
    assert (await store.get_job("e")).next_run_time == at(20)


async def test_modified_while_leased_keeps_the_change(store: Store) -> None:
    await store.add_jobs([make_job("m", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=10, lease_duration=30)
    await store.update_job(attrs.evolve(lease.job, next_run_time=None))  # paused meanwhile
    await store.release_jobs("s1", [Release(lease=lease, next_run_time=at(20))])
    assert (await store.get_job("m")).next_run_time is None


async def test_run_history_newest_first_and_limited(store: Store) -> None:
    await store.add_jobs([make_job("h", 10)], replace=False)
    for i in range(5):
        await store.finish_run(
            Run(job_id="h", scheduled_time=at(i), finished_at=at(i), outcome=RunOutcome.SUCCESS)
        )
    runs = await store.get_runs("h", limit=3)
    assert [r.scheduled_time for r in runs] == [at(4), at(3), at(2)]


async def test_memory_store_bounds_histories_of_removed_jobs() -> None:
    from horae.stores import memory

    store = memory.MemoryStore()
    for i in range(memory._REMOVED_HISTORIES + 10):
        await store.add_jobs([make_job(f"j{i}", 1)], replace=False)
        await store.finish_run(
            Run(job_id=f"j{i}", scheduled_time=at(1), finished_at=at(1), outcome=RunOutcome.SUCCESS)
        )
        await store.remove_job(f"j{i}")
    assert await store.get_runs("j0") == []  # the oldest removed job's history is gone
    last = f"j{memory._REMOVED_HISTORIES + 9}"
    assert len(await store.get_runs(last)) == 1  # recent ones stay readable
