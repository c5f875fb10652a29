"""Conformance: leases of in-flight runs, their renewal, takeover and retries.

A scheduler that dies leaves its runs in flight; their leases expire and another
scheduler claims them (to record them abandoned, and retry them if the job says so).
Every store must pass these.
"""

from __future__ import annotations

import attrs
import pytest

from horae.jobs import Run, RunOutcome
from horae.stores.base import Release, Store

from .helpers import at, make_job

pytestmark = pytest.mark.anyio


async def _start_run(store: Store, job_id: str, when: float, holder: str, lease: float) -> Run:
    """Acquire the job at ``when`` and release it with one run started by ``holder``."""
    (leased,) = await store.acquire_jobs(holder, at(when), limit=1, lease_duration=lease)
    assert leased.job_id == job_id
    run = Run(job_id=job_id, scheduled_time=at(when), scheduler_id=holder)
    rejected = await store.release_jobs(
        holder, [Release(lease=leased, next_run_time=at(when + 1000), started=[run])]
    )
    assert rejected == set()
    return run


def _ended(run: Run, outcome: RunOutcome, finished: float) -> Run:
    return attrs.evolve(
        run, outcome=outcome, started_at=run.scheduled_time, finished_at=at(finished)
    )


async def test_started_runs_are_held_until_the_lease_expires(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    run = await _start_run(store, "a", 10, "s1", lease=30)
    # Not expired yet: nobody can claim it.
    assert await store.claim_expired_runs("s2", at(39), limit=10, lease_duration=30) == []
    (claimed,) = await store.claim_expired_runs("s2", at(40), limit=10, lease_duration=30)
    assert claimed.id == run.id
    assert claimed.scheduler_id == "s1"  # who ran it, not who claimed it
    assert claimed.scheduled_time == at(10)
    assert claimed.outcome is None
    # Claimed: held by s2 now, so not claimable again until s2's lease ends.
    assert await store.claim_expired_runs("s3", at(41), limit=10, lease_duration=30) == []
    assert [r.id for r in await store.claim_expired_runs("s3", at(70), 10, 30)] == [run.id]


async def test_extend_runs_renews_and_reports_lost_runs(store: Store) -> None:
    await store.add_jobs([make_job("a", 10), make_job("b", 11)], replace=False)
    run_a = await _start_run(store, "a", 10, "s1", lease=30)
    run_b = await _start_run(store, "b", 11, "s1", lease=29)
    assert await store.extend_runs("s1", [run_a.id], at(100)) == set()
    # b was not renewed: it expires at 40 and is claimed; a is held until 100.
    claimed = await store.claim_expired_runs("s2", at(50), limit=10, lease_duration=30)
    assert [r.id for r in claimed] == [run_b.id]
    # s1 learns that it lost b (and that an unknown id is not its own).
    unknown = Run(job_id="a", scheduled_time=at(0)).id
    assert await store.extend_runs("s1", [run_a.id, run_b.id, unknown], at(130)) == {
        run_b.id,
        unknown,
    }
    # Another scheduler cannot renew what s1 holds.
    assert await store.extend_runs("s2", [run_a.id], at(500)) == {run_a.id}
    assert await store.claim_expired_runs("s2", at(131), limit=10, lease_duration=30) != []


async def test_claimed_runs_still_count_for_max_instances(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    run = await _start_run(store, "a", 10, "s1", lease=5)
    (claimed,) = await store.claim_expired_runs("s2", at(20), limit=10, lease_duration=30)
    (lease,) = await store.acquire_jobs("s2", at(1010), limit=10, lease_duration=30)
    assert lease.running == 1
    await store.release_jobs("s2", [Release(lease=lease, next_run_time=at(2000))])
    abandoned = attrs.evolve(
        claimed, outcome=RunOutcome.ABANDONED, finished_at=at(20), error="its scheduler died"
    )
    await store.finish_run(abandoned)
    (lease,) = await store.acquire_jobs("s2", at(2000), limit=10, lease_duration=30)
    assert lease.running == 0
    (recorded,) = await store.get_runs("a")
    assert recorded.id == run.id
    assert recorded.outcome is RunOutcome.ABANDONED
    assert recorded.scheduler_id == "s1"
    assert recorded.error == "its scheduler died"


async def test_finish_with_retry_keeps_the_slot(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    run = await _start_run(store, "a", 10, "s1", lease=30)
    retry = Run(job_id="a", scheduled_time=at(10), scheduler_id="s1", attempt=2)
    await store.finish_run(_ended(run, RunOutcome.ERROR, 11), retry=retry, expires_at=at(60))
    runs = await store.get_runs("a")
    assert [(r.id, r.attempt, r.outcome) for r in runs] == [
        (retry.id, 2, None),
        (run.id, 1, RunOutcome.ERROR),
    ]
    (lease,) = await store.acquire_jobs("s2", at(1010), limit=10, lease_duration=30)
    assert lease.running == 1  # the retry holds the slot the first attempt had
    await store.release_jobs("s2", [Release(lease=lease, next_run_time=at(2000))])
    # The retry is leased until 60, to its own scheduler.
    assert await store.extend_runs("s1", [retry.id], at(90)) == set()
    assert await store.claim_expired_runs("s2", at(89), limit=10, lease_duration=30) == []
    await store.finish_run(_ended(retry, RunOutcome.SUCCESS, 12))
    (lease,) = await store.acquire_jobs("s2", at(2000), limit=10, lease_duration=30)
    assert lease.running == 0


async def test_finishing_a_claimed_run_keeps_the_first_record(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    run = await _start_run(store, "a", 10, "s1", lease=5)
    (claimed,) = await store.claim_expired_runs("s2", at(20), limit=10, lease_duration=30)
    retry = Run(job_id="a", scheduled_time=at(10), scheduler_id="s2", attempt=2)
    await store.finish_run(
        attrs.evolve(claimed, outcome=RunOutcome.ABANDONED, finished_at=at(20)),
        retry=retry,
        expires_at=at(50),
    )
    # s1 was only slow: it finishes the run late, and asks for a retry of its own.
    late_retry = Run(job_id="a", scheduled_time=at(10), scheduler_id="s1", attempt=2)
    await store.finish_run(_ended(run, RunOutcome.ERROR, 21), retry=late_retry, expires_at=at(50))
    runs = await store.get_runs("a")
    assert [(r.id, r.outcome) for r in runs] == [
        (retry.id, None),  # s2's retry only: s1's was ignored
        (run.id, RunOutcome.ABANDONED),  # the first record stays
    ]
    (lease,) = await store.acquire_jobs("s3", at(1010), limit=10, lease_duration=30)
    assert lease.running == 1


async def test_claim_takes_the_oldest_leases_first_and_respects_the_limit(store: Store) -> None:
    jobs = [make_job(str(i), 10 + i) for i in range(4)]
    await store.add_jobs(jobs, replace=False)
    runs = [await _start_run(store, str(i), 10 + i, "s1", lease=10) for i in range(4)]
    first = await store.claim_expired_runs("s2", at(100), limit=2, lease_duration=30)
    assert [r.id for r in first] == [runs[0].id, runs[1].id]
    second = await store.claim_expired_runs("s3", at(100), limit=10, lease_duration=30)
    assert [r.id for r in second] == [runs[2].id, runs[3].id]


async def test_runs_of_a_removed_job_can_still_be_claimed(store: Store) -> None:
    await store.add_jobs([make_job("gone", 10)], replace=False)
    run = await _start_run(store, "gone", 10, "s1", lease=5)
    await store.remove_job("gone")
    (claimed,) = await store.claim_expired_runs("s2", at(20), limit=10, lease_duration=30)
    assert claimed.id == run.id
    await store.finish_run(attrs.evolve(claimed, outcome=RunOutcome.ABANDONED, finished_at=at(20)))
    assert await store.claim_expired_runs("s2", at(500), limit=10, lease_duration=30) == []


async def test_a_leased_job_counts_at_its_lease_expiry_for_next_run_time(store: Store) -> None:
    await store.add_jobs([make_job("a", 10), make_job("b", 100)], replace=False)
    await store.acquire_jobs("dead", at(10), limit=1, lease_duration=30)
    # "a" is leased until 40 by a scheduler that will never release it: another
    # scheduler must wake at 40 to take it over, not sleep until b's 100.
    assert await store.next_run_time() == at(40)
