"""Conformance: a job removed with its last run's outcome (``remove_finished_job``).

A job whose trigger has ended but whose runs may still be rerun is kept, without a next
run time, until its last run ends. The scheduler then asks ``finish_run`` to remove it in
the same step as the outcome is stored, so that a process dying in between cannot leave
it behind, looking paused. The store removes it only if nothing of it is left to happen:
no next run time, no lease, no hold, no other run in flight. Every store must pass these.
"""

from __future__ import annotations

import anyio
import attrs
import pytest

from horae import IntervalTrigger
from horae._planning import plan_release
from horae.errors import JobLookupError
from horae.jobs import Job, Run, RunOutcome
from horae.stores.base import Release, Store, StoreContext

from .conftest import StoreFactory, context
from .helpers import at, make_job

pytestmark = pytest.mark.anyio


def _run(job_id: str, when: float, holder: str = "s1") -> Run:
    return Run(job_id=job_id, scheduled_time=at(when), scheduler_id=holder)


def _ended(run: Run, finished: float, outcome: RunOutcome = RunOutcome.SUCCESS) -> Run:
    return attrs.evolve(
        run, outcome=outcome, started_at=run.scheduled_time, finished_at=at(finished)
    )


async def _kept_for_its_runs(store: Store, job_id: str, *runs: Run) -> None:
    """Add ``job_id`` and release its last fire time with ``runs`` in flight, kept
    without a next run time (as plan_release keeps a job whose runs may be rerun)."""
    await store.add_jobs([make_job(job_id, 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    release = Release(lease=lease, next_run_time=None, started=runs)
    assert await store.release_jobs("s1", [release]) == set()
    assert (await store.get_job(job_id)).next_run_time is None


async def _recorded(store: Store, job_id: str) -> dict[object, RunOutcome | None]:
    return {run.id: run.outcome for run in await store.get_runs(job_id)}


async def test_a_job_with_nothing_left_is_removed_with_its_last_outcome(store: Store) -> None:
    run = _run("a", 10)
    await _kept_for_its_runs(store, "a", run)
    assert await store.finish_run(_ended(run, 12), remove_finished_job=True) is True
    with pytest.raises(JobLookupError):
        await store.get_job("a")
    assert [job.id for job in await store.get_jobs()] == []
    assert await store.next_run_time() is None
    # The outcome is stored, and the history stays readable, as after remove_job.
    assert await _recorded(store, "a") == {run.id: RunOutcome.SUCCESS}
    with pytest.raises(JobLookupError):
        await store.remove_job("a")


async def test_a_removed_job_leaves_nothing_behind(store: Store) -> None:
    run = _run("a", 10)
    await _kept_for_its_runs(store, "a", run)
    assert await store.finish_run(_ended(run, 12), remove_finished_job=True)
    # Added again under its id: a new job, counting its runs from 0, due and acquirable.
    await store.add_jobs([make_job("a", 50)], replace=False)
    assert await store.next_run_time() == at(50)
    (lease,) = await store.acquire_jobs("s1", at(50), limit=1, lease_duration=30)
    assert (lease.job_id, lease.running, lease.run_count) == ("a", 0, 0)


async def test_without_the_flag_the_job_stays(store: Store) -> None:
    run = _run("a", 10)
    await _kept_for_its_runs(store, "a", run)
    assert await store.finish_run(_ended(run, 12)) is False
    assert (await store.get_job("a")).next_run_time is None
    assert await _recorded(store, "a") == {run.id: RunOutcome.SUCCESS}


async def test_another_run_in_flight_keeps_the_job_until_it_ends(store: Store) -> None:
    first, second = _run("a", 10), _run("a", 10)
    await _kept_for_its_runs(store, "a", first, second)
    assert await store.finish_run(_ended(first, 12), remove_finished_job=True) is False
    assert (await store.get_job("a")).next_run_time is None
    assert await _recorded(store, "a") == {first.id: RunOutcome.SUCCESS, second.id: None}
    assert await store.finish_run(_ended(second, 13), remove_finished_job=True) is True
    with pytest.raises(JobLookupError):
        await store.get_job("a")
    assert await _recorded(store, "a") == {
        first.id: RunOutcome.SUCCESS,
        second.id: RunOutcome.SUCCESS,
    }


async def test_a_rescheduled_job_stays(store: Store) -> None:
    run = _run("a", 10)
    await _kept_for_its_runs(store, "a", run)
    # The user gave it a fire time again while its run went on.
    await store.update_job(attrs.evolve(await store.get_job("a"), next_run_time=at(100)))
    assert await store.finish_run(_ended(run, 12), remove_finished_job=True) is False
    assert (await store.get_job("a")).next_run_time == at(100)
    assert await store.next_run_time() == at(100)
    assert await _recorded(store, "a") == {run.id: RunOutcome.SUCCESS}


async def test_a_leased_job_stays(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    run = _run("a", 10)
    await store.release_jobs("s1", [Release(lease=lease, next_run_time=at(20), started=[run])])
    (lease,) = await store.acquire_jobs("s2", at(20), limit=1, lease_duration=30)
    # Paused while s2 holds it: no next run time, but leased.
    await store.update_job(attrs.evolve(await store.get_job("a"), next_run_time=None))
    assert await store.finish_run(_ended(run, 21), remove_finished_job=True) is False
    assert (await store.get_job("a")).next_run_time is None
    assert await _recorded(store, "a") == {run.id: RunOutcome.SUCCESS}
    # s2's release still applies to it (the job was not removed under its lease).
    assert await store.release_jobs("s2", [Release(lease=lease, next_run_time=at(30))]) == set()
    assert (await store.get_job("a")).next_run_time is None  # the pause wins


async def test_a_held_job_stays(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    first, second = _run("a", 10), _run("a", 10)
    release = Release(
        lease=lease, next_run_time=at(20), started=[first, second], hold_while_running=2
    )
    await store.release_jobs("s1", [release])
    assert await store.next_run_time() is None  # held
    # The end of one run frees it; it has a next run time, so it stays.
    assert await store.finish_run(_ended(first, 12), remove_finished_job=True) is False
    assert (await store.get_job("a")).next_run_time == at(20)
    assert await store.next_run_time() == at(20)
    assert await _recorded(store, "a") == {first.id: RunOutcome.SUCCESS, second.id: None}


async def test_a_run_followed_by_a_retry_keeps_its_job(store: Store) -> None:
    run = _run("a", 10)
    await _kept_for_its_runs(store, "a", run)
    retry = Run(job_id="a", scheduled_time=at(10), scheduler_id="s1", attempt=2)
    failed = _ended(run, 12, RunOutcome.ERROR)
    removed = await store.finish_run(
        failed, retry=retry, expires_at=at(60), remove_finished_job=True
    )
    assert removed is False
    assert (await store.get_job("a")).next_run_time is None
    assert await _recorded(store, "a") == {run.id: RunOutcome.ERROR, retry.id: None}
    # The retry's end is the last one.
    assert await store.finish_run(_ended(retry, 20), remove_finished_job=True) is True
    with pytest.raises(JobLookupError):
        await store.get_job("a")
    assert await _recorded(store, "a") == {run.id: RunOutcome.ERROR, retry.id: RunOutcome.SUCCESS}


async def test_only_the_job_of_the_run_is_removed(store: Store) -> None:
    run_a, run_b = _run("a", 10), _run("b", 10)
    await _kept_for_its_runs(store, "a", run_a)
    await _kept_for_its_runs(store, "b", run_b)
    await store.add_jobs([make_job("c", 40)], replace=False)
    assert await store.finish_run(_ended(run_a, 12), remove_finished_job=True)
    assert sorted(job.id for job in await store.get_jobs()) == ["b", "c"]
    assert await store.next_run_time() == at(40)


async def test_the_last_two_runs_ending_at_once_remove_the_job_once(
    store_factory: StoreFactory,
) -> None:
    # Two schedulers end the job's last two runs at the same moment, both asking for the
    # removal: whichever comes second must see the other's run gone, and remove the job.
    stores = [store_factory(), store_factory()]
    for i, each in enumerate(stores):
        await each.start(
            StoreContext(scheduler_id=f"s{i}", wakeup=lambda: None, publish=lambda e: None)
        )
    try:
        ids = [f"j{i}" for i in range(20)]
        pairs = {job_id: (_run(job_id, 10, "s0"), _run(job_id, 10, "s1")) for job_id in ids}
        for job_id, runs in pairs.items():
            await _kept_for_its_runs(stores[0], job_id, *runs)

        async def finish(store: Store, run: Run, answers: list[bool]) -> None:
            answers.append(await store.finish_run(_ended(run, 12), remove_finished_job=True))

        # One job at a time, so that each pair of finishes meets in the store.
        for job_id, (first, second) in pairs.items():
            answers: list[bool] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(finish, stores[0], first, answers)
                tg.start_soon(finish, stores[1], second, answers)
            assert sorted(answers) == [False, True], job_id
            with pytest.raises(JobLookupError):
                await stores[1].get_job(job_id)
            assert set((await _recorded(stores[1], job_id)).values()) == {RunOutcome.SUCCESS}
    finally:
        for each in stores:
            await each.stop()


async def test_the_removal_tells_other_schedulers_as_remove_job_does(
    store_name: str, store_factory: StoreFactory
) -> None:
    if store_name == "memory":
        pytest.skip("MemoryStore's remove_job wakes no other scheduler: nothing to match")
    woken = [anyio.Event()]
    mine = store_factory()
    other = store_factory()
    await mine.start(StoreContext(scheduler_id="mine", wakeup=lambda: None, publish=lambda e: None))
    await other.start(
        StoreContext(scheduler_id="other", wakeup=lambda: woken[-1].set(), publish=lambda e: None)
    )
    try:
        run = _run("a", 10, "mine")
        await mine.add_jobs([make_job("a", 10)], replace=False)
        (lease,) = await mine.acquire_jobs("mine", at(10), limit=1, lease_duration=30)
        await mine.release_jobs("mine", [Release(lease=lease, next_run_time=None, started=[run])])
        # Whatever the store told the other scheduler so far (the job was added) is
        # not what this test waits for.
        with anyio.fail_after(5):
            await woken[-1].wait()
        woken.append(anyio.Event())
        assert await mine.finish_run(_ended(run, 12), remove_finished_job=True)
        with anyio.fail_after(5):
            await woken[-1].wait()
    finally:
        await other.stop()
        await mine.stop()


# ------------------------------------------------------------ remove_job_if_idle
#
# A scheduler whose release keeps a job past its trigger's end, because a run of it was in
# flight when acquired, asks for the removal itself once the release is answered: that
# run may have ended meanwhile, its finish declining the removal while the job was leased.


def _ending(job_id: str) -> Job:
    """A job due at 10 whose trigger fires at 10 and 20 only, kept for its runs' reruns."""
    trigger = IntervalTrigger(seconds=10, start_date=at(10), end_date=at(20), timezone="UTC")
    return attrs.evolve(make_job(job_id, 10), trigger=trigger, on_crash="rerun")


async def test_remove_job_if_idle_removes_a_kept_job_whose_runs_ended(store: Store) -> None:
    run = _run("a", 10)
    await _kept_for_its_runs(store, "a", run)
    assert await store.finish_run(_ended(run, 12)) is False  # without the flag: kept
    assert await store.remove_job_if_idle("a") is True
    with pytest.raises(JobLookupError):
        await store.get_job("a")
    assert [job.id for job in await store.get_jobs()] == []
    assert await store.next_run_time() is None
    # Removed as remove_job removes: the history stays, the id is free again.
    assert await _recorded(store, "a") == {run.id: RunOutcome.SUCCESS}
    assert await store.remove_job_if_idle("a") is False
    await store.add_jobs([make_job("a", 50)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(50), limit=1, lease_duration=30)
    assert (lease.job_id, lease.running, lease.run_count) == ("a", 0, 0)


async def test_remove_job_if_idle_leaves_a_job_with_a_run_in_flight(store: Store) -> None:
    run = _run("a", 10)
    await _kept_for_its_runs(store, "a", run)
    assert await store.remove_job_if_idle("a") is False
    assert (await store.get_job("a")).next_run_time is None
    assert await _recorded(store, "a") == {run.id: None}
    # Its run still removes it at its end.
    assert await store.finish_run(_ended(run, 12), remove_finished_job=True) is True


async def test_remove_job_if_idle_leaves_a_leased_job(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    # Paused while leased: no next run time, no run in flight, but leased.
    await store.update_job(attrs.evolve(await store.get_job("a"), next_run_time=None))
    assert await store.remove_job_if_idle("a") is False
    assert (await store.get_job("a")).next_run_time is None
    # The release still applies (the job was not removed under its lease).
    assert await store.release_jobs("s1", [Release(lease=lease, next_run_time=at(20))]) == set()
    assert await store.remove_job_if_idle("a") is True


async def test_remove_job_if_idle_leaves_a_held_job(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
    run = _run("a", 10)
    release = Release(lease=lease, next_run_time=at(20), started=[run], hold_while_running=1)
    await store.release_jobs("s1", [release])
    assert await store.next_run_time() is None  # held
    assert await store.remove_job_if_idle("a") is False
    assert (await store.get_job("a")).next_run_time == at(20)
    # Still held: the end of its run frees it.
    assert await store.next_run_time() is None
    await store.finish_run(_ended(run, 12))
    assert await store.next_run_time() == at(20)


async def test_remove_job_if_idle_leaves_a_job_with_a_next_run_time(store: Store) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    assert await store.remove_job_if_idle("a") is False
    assert await store.remove_job_if_idle("nonexistent") is False
    assert (await store.get_job("a")).next_run_time == at(10)
    assert await store.next_run_time() == at(10)


async def _two_stores(store_factory: StoreFactory) -> tuple[Store, Store]:
    first, second = store_factory(), store_factory()
    await first.start(context("s1"))
    await second.start(context("s2"))
    return first, second


async def test_a_run_ending_while_its_job_is_leased_elsewhere_leaves_no_job(
    store_factory: StoreFactory,
) -> None:
    # The race: s1 runs the job's fire time 10; s2 acquires its last one (20) while that
    # run is in flight, skips it and keeps the job for the run's reruns. The run ends
    # before s2's release: its finish declines (the job is leased), s2's release keeps
    # the job, and s2's remove_job_if_idle, after its release, removes it.
    s1, s2 = await _two_stores(store_factory)
    try:
        await s1.add_jobs([_ending("a")], replace=False)
        (lease,) = await s1.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
        first = plan_release(lease, at(10), "s1")
        (run,) = first.started
        assert first.next_run_time == at(20)
        assert await s1.release_jobs("s1", [first]) == set()

        (lease,) = await s2.acquire_jobs("s2", at(20), limit=1, lease_duration=30)
        assert lease.running == 1
        second = plan_release(lease, at(20), "s2")
        assert (second.next_run_time, second.remove, second.started) == (None, False, [])
        assert [r.outcome for r in second.finished] == [RunOutcome.SKIPPED]

        assert await s1.finish_run(_ended(run, 21), remove_finished_job=True) is False
        assert await s2.release_jobs("s2", [second]) == set()
        assert (await s2.get_job("a")).next_run_time is None  # kept: left behind so far
        assert await s2.remove_job_if_idle("a") is True
        with pytest.raises(JobLookupError):
            await s1.get_job("a")
        assert await s1.get_jobs() == []
        assert sorted(str(r.outcome) for r in await s1.get_runs("a")) == ["skipped", "success"]
    finally:
        await s2.stop()
        await s1.stop()


async def test_a_run_ending_after_the_release_removes_its_job(
    store_factory: StoreFactory,
) -> None:
    # The same, with the run ending after s2's release: s2's remove_job_if_idle finds the
    # run in flight and declines; the run's finish removes the job.
    s1, s2 = await _two_stores(store_factory)
    try:
        await s1.add_jobs([_ending("a")], replace=False)
        (lease,) = await s1.acquire_jobs("s1", at(10), limit=1, lease_duration=30)
        first = plan_release(lease, at(10), "s1")
        (run,) = first.started
        assert await s1.release_jobs("s1", [first]) == set()
        (lease,) = await s2.acquire_jobs("s2", at(20), limit=1, lease_duration=30)
        second = plan_release(lease, at(20), "s2")
        assert await s2.release_jobs("s2", [second]) == set()
        assert await s2.remove_job_if_idle("a") is False
        assert (await s2.get_job("a")).next_run_time is None
        assert await s1.finish_run(_ended(run, 21), remove_finished_job=True) is True
        with pytest.raises(JobLookupError):
            await s2.get_job("a")
        assert await s2.remove_job_if_idle("a") is False
    finally:
        await s2.stop()
        await s1.stop()


async def test_a_finish_and_remove_job_if_idle_at_once_remove_the_job_once(
    store_factory: StoreFactory,
) -> None:
    # The run's finish (asking for the removal) and remove_job_if_idle meet in the store,
    # through two instances, for jobs just released: exactly one of them removes each.
    s1, s2 = await _two_stores(store_factory)
    try:
        runs = {f"j{i}": _run(f"j{i}", 10) for i in range(20)}
        for job_id, run in runs.items():
            await _kept_for_its_runs(s1, job_id, run)

        async def finish(run: Run, answers: list[bool]) -> None:
            answers.append(await s1.finish_run(_ended(run, 12), remove_finished_job=True))

        async def remove(job_id: str, answers: list[bool]) -> None:
            answers.append(await s2.remove_job_if_idle(job_id))

        for job_id, run in runs.items():
            answers: list[bool] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(finish, run, answers)
                tg.start_soon(remove, job_id, answers)
            assert answers.count(True) == 1, (job_id, answers)
            with pytest.raises(JobLookupError):
                await s2.get_job(job_id)
    finally:
        await s2.stop()
        await s1.stop()


async def test_remove_job_if_idle_tells_other_schedulers_as_remove_job_does(
    store_name: str, store_factory: StoreFactory
) -> None:
    if store_name == "memory":
        pytest.skip("MemoryStore's remove_job wakes no other scheduler: nothing to match")
    woken = [anyio.Event()]
    mine = store_factory()
    other = store_factory()
    await mine.start(context("mine"))
    await other.start(
        StoreContext(scheduler_id="other", wakeup=lambda: woken[-1].set(), publish=lambda e: None)
    )
    try:
        run = _run("a", 10, "mine")
        await _kept_for_its_runs(mine, "a", run)
        await mine.finish_run(_ended(run, 12))
        # Whatever the store told the other scheduler so far is not what this waits for.
        with anyio.fail_after(5):
            await woken[-1].wait()
        woken.append(anyio.Event())
        assert await mine.remove_job_if_idle("a")
        with anyio.fail_after(5):
            await woken[-1].wait()
    finally:
        await other.stop()
        await mine.stop()
