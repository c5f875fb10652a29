"""Faults inside one process: retries, takeover of a dead scheduler's runs, store outages,
graceful shutdown. All on a fake clock; the real-process, real-server versions are in
tests/faults/."""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.lowlevel
import attrs
import pytest

from horae import (
    EVENT_JOB_REMOVED,
    AsyncScheduler,
    Event,
    JobAbandoned,
    JobArgumentError,
    JobError,
    JobLookupError,
    JobRemoved,
    JobTimedOut,
    MemoryStore,
    Retry,
    Run,
    RunOutcome,
    StoreError,
    StoreFailed,
    StoreRecovered,
    current_run,
)
from horae._planning import plan_release
from horae.jobs import RERUN_ATTEMPTS
from horae.stores.base import Release
from horae.testing import FakeClock, wait_idle

from . import jobfuncs

pytestmark = pytest.mark.anyio

NO_JITTER = {"jitter": 0.0}


def _attempts(runs: list[Run]) -> list[tuple[int, RunOutcome | None]]:
    return [(r.attempt, r.outcome) for r in runs]


# ------------------------------------------------------------------ retry policy


def test_retry_validates_its_fields() -> None:
    with pytest.raises(JobArgumentError, match=r"retry\.attempts"):
        Retry(attempts=0)
    with pytest.raises(JobArgumentError, match=r"retry\.backoff"):
        Retry(backoff=-1)
    with pytest.raises(JobArgumentError, match=r"retry\.multiplier"):
        Retry(multiplier=0.5)
    with pytest.raises(JobArgumentError, match=r"retry\.jitter"):
        Retry(jitter=2)
    with pytest.raises(JobArgumentError, match=r"retry\.on"):
        Retry(on=(int,))  # type: ignore[arg-type]
    assert Retry(on=KeyError).on == (KeyError,)


def test_retry_delays_grow_and_are_capped() -> None:
    policy = Retry(attempts=10, backoff=2, multiplier=3, max_backoff=20, jitter=0)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4)] == [2, 6, 18, 20]
    jittered = Retry(backoff=10, jitter=0.5)
    assert all(5 <= jittered.delay(1).total_seconds() <= 10 for _ in range(100))


def test_retry_delays_never_overflow() -> None:
    forever = Retry(attempts=10**6, backoff=1, max_backoff=300, jitter=0)
    assert forever.delay(5000) == timedelta(seconds=300)


async def test_add_job_refuses_a_bad_retry(scheduler: AsyncScheduler) -> None:
    with pytest.raises(JobArgumentError, match="retry: 'often' is not a retry policy"):
        await scheduler.add_job(jobfuncs.async_add, args=[1], retry="often")  # type: ignore[arg-type]
    job = await scheduler.add_job(jobfuncs.async_add, args=[1], retry=4, next_run_time=None)
    assert job.retry == Retry(attempts=4)


async def test_an_error_is_retried_with_backoff_until_it_succeeds(clock: FakeClock) -> None:
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(current_run().attempt)
        if len(attempts) < 3:
            raise ValueError("not yet")
        return "ok"

    events: list[Event] = []
    async with AsyncScheduler(clock=clock) as scheduler:
        scheduler.add_listener(events.append)
        await scheduler.add_job(flaky, id="f", retry=Retry(attempts=3, backoff=10, **NO_JITTER))
        await wait_idle(scheduler)
        assert attempts == [1]
        clock.advance(9.9)
        await wait_idle(scheduler)
        assert attempts == [1]
        clock.advance(0.1)
        await wait_idle(scheduler)
        assert attempts == [1, 2]
        clock.advance(20)  # the second delay doubles
        await wait_idle(scheduler)
        assert attempts == [1, 2, 3]
        runs = await scheduler.get_runs("f")
    assert _attempts(runs) == [
        (3, RunOutcome.SUCCESS),
        (2, RunOutcome.ERROR),
        (1, RunOutcome.ERROR),
    ]
    assert len({r.id for r in runs}) == 3  # each attempt a run of its own
    assert len({r.scheduled_time for r in runs}) == 1  # all for the one fire time
    assert sum(isinstance(e, JobError) for e in events) == 2


async def test_the_last_failure_is_final(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(
            jobfuncs.async_fail, id="f", retry=Retry(attempts=2, backoff=1, **NO_JITTER)
        )
        await wait_idle(scheduler)
        clock.advance(1)
        await wait_idle(scheduler)
        clock.advance(3600)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("f")
    assert _attempts(runs) == [(2, RunOutcome.ERROR), (1, RunOutcome.ERROR)]


async def test_only_the_listed_exceptions_are_retried(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        # async_fail raises RuntimeError.
        await scheduler.add_job(jobfuncs.async_fail, id="f", retry=Retry(on=(OSError,)))
        await wait_idle(scheduler)
        clock.advance(3600)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("f")
    assert _attempts(runs) == [(1, RunOutcome.ERROR)]


async def test_a_timeout_is_retried(clock: FakeClock) -> None:
    async def hang() -> None:
        if current_run().attempt == 1:
            await anyio.sleep_forever()

    events: list[Event] = []
    async with AsyncScheduler(clock=clock) as scheduler:
        scheduler.add_listener(events.append)
        await scheduler.add_job(
            hang, id="h", timeout=0.01, retry=Retry(attempts=2, backoff=5, **NO_JITTER)
        )
        with anyio.fail_after(5):
            await wait_idle(scheduler)
        clock.advance(5)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("h")
    assert _attempts(runs) == [(2, RunOutcome.SUCCESS), (1, RunOutcome.TIMEOUT)]
    assert any(isinstance(e, JobTimedOut) for e in events)


async def test_a_waiting_retry_holds_its_max_instances_slot(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(
            jobfuncs.async_fail,
            "interval",
            seconds=10,
            id="f",
            retry=Retry(attempts=2, backoff=15, **NO_JITTER),
        )
        clock.advance(10)  # first fire time: fails, retry waits until 25
        await wait_idle(scheduler)
        clock.advance(10)  # second fire time at 20: the retry holds the only slot
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("f")
        assert [(r.attempt, r.outcome) for r in runs] == [
            (2, None),  # the retry, waiting (in flight)
            (1, RunOutcome.SKIPPED),
            (1, RunOutcome.ERROR),
        ]
        clock.advance(5)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("f")
    assert runs[0].attempt == 2
    assert runs[0].outcome is RunOutcome.ERROR


# ------------------------------------------------------- takeover of dead runs


async def _plant_dead_run(store: MemoryStore, clock: FakeClock, job_id: str) -> Run:
    """Acquire the job and start a run as a scheduler "dead" that then never renews it."""
    (lease,) = await store.acquire_jobs("dead", clock.now(), limit=1, lease_duration=30)
    assert lease.job is not None
    run = Run(job_id=job_id, scheduled_time=clock.now(), scheduler_id="dead")
    trigger_next = lease.job.trigger.next(clock.now())
    await store.release_jobs(
        "dead", [Release(lease=lease, next_run_time=trigger_next, started=[run])]
    )
    return run


async def _add_hourly(scheduler: AsyncScheduler, clock: FakeClock, **options: Any) -> None:
    """Job "j", due now, then every hour."""
    await scheduler.add_job(
        jobfuncs.async_add,
        "interval",
        seconds=3600,
        args=[1],
        id="j",
        next_run_time=clock.now(),
        **options,
    )


async def test_a_dead_schedulers_run_is_abandoned_then_retried(clock: FakeClock) -> None:
    store = MemoryStore()
    events: list[Event] = []
    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:
        scheduler.add_listener(events.append)
        await scheduler.pause()
        await _add_hourly(scheduler, clock, retry=Retry(attempts=2, backoff=5, **NO_JITTER))
        dead = await _plant_dead_run(store, clock, "j")
        await scheduler.resume()
        clock.advance(29)  # the dead run's lease holds until 30
        await wait_idle(scheduler)
        assert [r.outcome for r in await scheduler.get_runs("j")] == [None]
        clock.advance(11)  # past 30: the next renewal/claim round takes it over
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("j")
        assert _attempts(runs) == [(2, None), (1, RunOutcome.ABANDONED)]
        clock.advance(5)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("j")
    assert _attempts(runs) == [(2, RunOutcome.SUCCESS), (1, RunOutcome.ABANDONED)]
    abandoned = runs[1]
    assert abandoned.id == dead.id
    assert abandoned.scheduler_id == "dead"
    assert "dead stopped renewing" in (abandoned.error or "")
    assert runs[0].scheduler_id == scheduler.id
    (event,) = [e for e in events if isinstance(e, JobAbandoned)]
    assert event.run_id == dead.id


async def test_a_one_off_jobs_abandoned_run_is_retried_then_the_job_removed(
    clock: FakeClock,
) -> None:
    # The job's only fire time was released (its trigger has ended) by a scheduler that
    # then died: the job stays until its last run ends, so the takeover can retry it.
    store = MemoryStore()
    events: list[Event] = []
    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:
        scheduler.add_listener(events.append)
        await scheduler.pause()
        await scheduler.add_job(
            jobfuncs.async_add, args=[1], id="once", retry=Retry(attempts=2, backoff=5, **NO_JITTER)
        )
        (lease,) = await store.acquire_jobs("dead", clock.now(), limit=1, lease_duration=30)
        release = plan_release(lease, clock.now(), "dead")
        assert not release.remove
        assert release.next_run_time is None
        await store.release_jobs("dead", [release])
        await scheduler.resume()
        clock.advance(40)
        await wait_idle(scheduler)
        assert (await scheduler.get_job("once")).paused  # kept for the retry
        clock.advance(5)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("once")
        with pytest.raises(JobLookupError):
            await scheduler.get_job("once")
    assert _attempts(runs) == [(2, RunOutcome.SUCCESS), (1, RunOutcome.ABANDONED)]
    assert [e.job_id for e in events if isinstance(e, JobRemoved)] == ["once"]


async def test_a_one_off_job_with_retry_is_removed_after_its_run(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(jobfuncs.async_add, args=[1], id="once", retry=3)
        await wait_idle(scheduler)
        with pytest.raises(JobLookupError):
            await scheduler.get_job("once")
        assert _attempts(await scheduler.get_runs("once")) == [(1, RunOutcome.SUCCESS)]


class _RemovalWatchingStore(MemoryStore):
    """A memory store that notes the finishes asking to remove their job, and refuses
    remove_job: a job kept past its trigger's end must go with its last run's outcome,
    in that one store call, never in a call of its own after it."""

    def __init__(self) -> None:
        super().__init__()
        self.removals: list[tuple[str, bool]] = []

    async def finish_run(
        self,
        run: Run,
        *,
        retry: Run | None = None,
        expires_at: datetime | None = None,
        remove_finished_job: bool = False,
    ) -> bool:
        removed = await super().finish_run(
            run, retry=retry, expires_at=expires_at, remove_finished_job=remove_finished_job
        )
        if remove_finished_job:
            self.removals.append((run.job_id, removed))
        return removed

    async def remove_job(self, job_id: str) -> None:
        raise AssertionError(f"remove_job({job_id!r}) called: the finish should have removed it")


async def test_a_finished_one_off_job_goes_with_its_last_outcome(clock: FakeClock) -> None:
    store = _RemovalWatchingStore()
    events: list[Event] = []
    async with AsyncScheduler(store, clock=clock) as scheduler:
        scheduler.add_listener(events.append)
        await scheduler.add_job(
            jobfuncs.async_fail, id="once", retry=Retry(attempts=2, backoff=5, **NO_JITTER)
        )
        await wait_idle(scheduler)
        # The first attempt failed: its retry waits, the job stays (without asking).
        assert (await scheduler.get_job("once")).paused
        assert store.removals == []
        clock.advance(5)
        await wait_idle(scheduler)
        with pytest.raises(JobLookupError):
            await scheduler.get_job("once")
        runs = await scheduler.get_runs("once")
    assert _attempts(runs) == [(2, RunOutcome.ERROR), (1, RunOutcome.ERROR)]
    assert store.removals == [("once", True)]
    assert [e.job_id for e in events if isinstance(e, JobRemoved)] == ["once"]
    # JobRemoved comes after the last run's own event, as when the job was removed apart.
    (removed,) = [i for i, e in enumerate(events) if isinstance(e, JobRemoved)]
    assert removed > max(i for i, e in enumerate(events) if isinstance(e, JobError))


async def test_a_taken_over_last_run_removes_its_job_with_its_outcome(clock: FakeClock) -> None:
    # A dead scheduler's run of a one-off job, at its last attempt: the takeover records
    # it abandoned, not rerun, and the job goes with that outcome.
    store = _RemovalWatchingStore()
    events: list[Event] = []
    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:
        scheduler.add_listener(events.append)
        await scheduler.pause()
        await scheduler.add_job(jobfuncs.async_add, args=[1], id="once", on_crash="rerun")
        (lease,) = await store.acquire_jobs("dead", clock.now(), limit=1, lease_duration=30)
        release = plan_release(lease, clock.now(), "dead")
        (run,) = release.started
        last = attrs.evolve(run, attempt=RERUN_ATTEMPTS)
        assert await store.release_jobs("dead", [attrs.evolve(release, started=[last])]) == set()
        assert (await scheduler.get_job("once")).paused  # kept for a rerun
        await scheduler.resume()
        clock.advance(40)
        await wait_idle(scheduler)
        with pytest.raises(JobLookupError):
            await scheduler.get_job("once")
        runs = await scheduler.get_runs("once")
    assert _attempts(runs) == [(RERUN_ATTEMPTS, RunOutcome.ABANDONED)]
    assert store.removals == [("once", True)]
    removed = [e for e in events if isinstance(e, JobRemoved)]
    assert [e.job_id for e in removed] == ["once"]
    (abandoned,) = [e for e in events if isinstance(e, JobAbandoned)]
    assert events.index(abandoned) < events.index(removed[0])


class _RaceStore(MemoryStore):
    """A memory store that runs ``before_release`` when scheduler "B" releases a batch,
    before the release itself (the moment a run of the job may end elsewhere), and
    ``before_finish`` before the next finish_run (a store call that takes its time). It
    notes the finishes asking to remove their job and the calls of remove_job_if_idle,
    with what they answered."""

    def __init__(self) -> None:
        super().__init__()
        self.before_release: Callable[[], Awaitable[None]] | None = None
        self.before_finish: Callable[[], Awaitable[None]] | None = None
        self.removals: list[tuple[str, bool]] = []
        self.idle_removals: list[tuple[str, bool]] = []
        self.finished = anyio.Event()
        self.idle_asked = anyio.Event()

    async def release_jobs(self, scheduler_id: str, releases: Sequence[Release]) -> set[str]:
        hook = self.before_release
        if scheduler_id == "B" and hook is not None:
            self.before_release = None
            await hook()
        return await super().release_jobs(scheduler_id, releases)

    async def finish_run(
        self,
        run: Run,
        *,
        retry: Run | None = None,
        expires_at: datetime | None = None,
        remove_finished_job: bool = False,
    ) -> bool:
        hook = self.before_finish
        if hook is not None:
            self.before_finish = None
            await hook()
        removed = await super().finish_run(
            run, retry=retry, expires_at=expires_at, remove_finished_job=remove_finished_job
        )
        if remove_finished_job:
            self.removals.append((run.job_id, removed))
            self.finished.set()
        return removed

    async def remove_job_if_idle(self, job_id: str) -> bool:
        removed = await super().remove_job_if_idle(job_id)
        self.idle_removals.append((job_id, removed))
        self.idle_asked.set()
        return removed


async def _race_a_last_run_with_a_release(store: _RaceStore, clock: FakeClock) -> list[Event]:
    """A runs job "once"'s first fire time; B acquires its last one while that run is in
    flight (it skips it and keeps the job, for the run's reruns). The run ends before
    B's release is stored: its finish finds the job leased by B and leaves it, and B's
    release keeps it. Returns B's events."""
    started, gate = anyio.Event(), anyio.Event()

    async def long_job() -> None:
        started.set()
        await gate.wait()

    async def end_the_run_first() -> None:
        gate.set()
        await store.finished.wait()

    events: list[Event] = []
    # Leases longer than the clock's jump: A's run stays A's (not taken over by B).
    a = AsyncScheduler(store, clock=clock, scheduler_id="A", lease_duration=600)
    b = AsyncScheduler(store, clock=clock, scheduler_id="B", lease_duration=600)
    b.add_listener(events.append)
    async with a, b:
        await b.pause()
        await a.add_job(
            long_job,
            "interval",
            seconds=60,
            start_date=clock.now(),
            end_date=clock.now() + timedelta(seconds=60),
            id="once",
            on_crash="rerun",
        )
        with anyio.fail_after(5):
            await started.wait()
        await a.pause()
        store.before_release = end_the_run_first
        await b.resume()
        clock.advance(60)
        with anyio.fail_after(5):
            await wait_idle(b)
            await wait_idle(a)
    assert store.removals == [("once", False)]  # declined: B held the job then
    runs = await store.get_runs("once")
    assert sorted((r.scheduler_id, r.outcome) for r in runs) == [
        ("A", RunOutcome.SUCCESS),
        ("B", RunOutcome.SKIPPED),
    ]
    return events


async def test_a_last_run_ending_while_another_scheduler_holds_its_job_leaves_no_job(
    clock: FakeClock,
) -> None:
    # B removes the job once its release is answered (remove_job_if_idle).
    store = _RaceStore()
    events = await _race_a_last_run_with_a_release(store, clock)
    with pytest.raises(JobLookupError):
        await store.get_job("once")
    assert [(e.job_id, e.origin) for e in events if isinstance(e, JobRemoved)] == [("once", "B")]


async def test_a_last_run_whose_outcome_is_stored_after_the_last_fire_time_leaves_no_job(
    clock: FakeClock,
) -> None:
    # A's run ends before the job's last fire time, but storing its outcome takes until
    # after it (the store was down, say): meanwhile B acquires that fire time with the run
    # in flight, skips it and keeps the job, and its remove_job_if_idle finds the run in
    # flight. The finish, sent before the trigger ended, does not ask for the removal;
    # A removes the job once the outcome is stored, the trigger having ended by then.
    store = _RaceStore()
    started, gate, sent, stored = anyio.Event(), anyio.Event(), anyio.Event(), anyio.Event()

    async def long_job() -> None:
        started.set()
        await gate.wait()

    async def slow_finish() -> None:
        sent.set()
        await stored.wait()

    events: list[Event] = []
    a = AsyncScheduler(store, clock=clock, scheduler_id="A", lease_duration=600)
    b = AsyncScheduler(store, clock=clock, scheduler_id="B", lease_duration=600)
    a.add_listener(events.append)
    b.add_listener(events.append)
    async with a, b:
        await b.pause()
        await a.add_job(
            long_job,
            "interval",
            seconds=60,
            start_date=clock.now(),
            end_date=clock.now() + timedelta(seconds=60),
            id="once",
            on_crash="rerun",
        )
        with anyio.fail_after(5):
            await started.wait()
        await a.pause()
        clock.advance(30)
        store.before_finish = slow_finish
        gate.set()
        with anyio.fail_after(5):
            await sent.wait()  # the run ended at 00:00:30; its outcome is on its way
        await b.resume()
        clock.advance(30)  # the last fire time: B acquires it with A's run in flight
        with anyio.fail_after(5):
            await store.idle_asked.wait()
        assert store.idle_removals == [("once", False)]  # B: the run is still in flight
        assert (await store.get_job("once")).paused
        stored.set()
        with anyio.fail_after(5):
            await wait_idle(a)
            await wait_idle(b)
        with pytest.raises(JobLookupError):
            await store.get_job("once")
        runs = await store.get_runs("once")
    assert store.removals == []  # sent before the trigger ended: no removal asked
    assert store.idle_removals == [("once", False), ("once", True)]
    assert sorted((r.scheduler_id, r.outcome) for r in runs) == [
        ("A", RunOutcome.SUCCESS),
        ("B", RunOutcome.SKIPPED),
    ]
    assert [(e.job_id, e.origin) for e in events if isinstance(e, JobRemoved)] == [("once", "A")]


class _FailingRemovalStore(_RaceStore):
    async def remove_job_if_idle(self, job_id: str) -> bool:
        raise StoreError("the connection dropped")


async def test_a_failed_removal_after_a_release_is_a_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = _FailingRemovalStore()
    with caplog.at_level(logging.WARNING, logger="horae.scheduler"):
        events = await _race_a_last_run_with_a_release(store, clock)
    assert (await store.get_job("once")).paused  # left behind, as before
    assert not [e for e in events if isinstance(e, JobRemoved)]
    (warning,) = [r for r in caplog.records if "could not ask the store" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "'once'" in warning.getMessage()
    assert "the connection dropped" in warning.getMessage()
    # The scheduler went on: no outage was announced for it.
    assert not [e for e in events if isinstance(e, StoreFailed)]


async def test_without_retry_an_abandoned_run_is_final(clock: FakeClock) -> None:
    store = MemoryStore()
    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:
        await scheduler.pause()
        await _add_hourly(scheduler, clock)
        await _plant_dead_run(store, clock, "j")
        await scheduler.resume()
        clock.advance(45)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("j")
        # The slot is free again: the next fire time runs.
        clock.advance(3600)
        await wait_idle(scheduler)
        later = await scheduler.get_runs("j")
    assert _attempts(runs) == [(1, RunOutcome.ABANDONED)]
    assert _attempts(later) == [(1, RunOutcome.SUCCESS), (1, RunOutcome.ABANDONED)]


async def test_a_fire_time_leased_by_a_dead_scheduler_runs_late(clock: FakeClock) -> None:
    store = MemoryStore()
    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:
        await scheduler.pause()
        await _add_hourly(scheduler, clock)
        fire_time = clock.now()
        # Acquired, never released: the dead scheduler died between the two.
        await store.acquire_jobs("dead", fire_time, limit=1, lease_duration=30)
        await scheduler.resume()
        await wait_idle(scheduler)
        assert await scheduler.get_runs("j") == []
        clock.advance(30)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("j")
    assert _attempts(runs) == [(1, RunOutcome.SUCCESS)]
    assert runs[0].scheduled_time == fire_time
    assert runs[0].started_at == fire_time + timedelta(seconds=30)


async def test_running_jobs_keep_their_leases(clock: FakeClock) -> None:
    store = MemoryStore()
    release = anyio.Event()

    async def long_job() -> None:
        await release.wait()

    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:
        await scheduler.add_job(long_job, id="long")
        for _ in range(10):  # 10 minutes of a job that runs, with leases of 30 s
            clock.advance(60)
            # wait_idle() would wait for the job: a running job is not idle.
            await anyio.wait_all_tasks_blocked()
        assert await store.claim_expired_runs("other", clock.now(), 10, 30) == []
        release.set()
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("long")
    assert _attempts(runs) == [(1, RunOutcome.SUCCESS)]


# ---------------------------------------------------------------- store outages


class FlakyStore:
    """A MemoryStore whose every call fails while ``down`` (a server that went away).

    The scheduler's outage handling is the same for every store; the real servers are
    stopped and restarted in tests/faults/.
    """

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.down = False

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("start", "stop") or not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise ConnectionError("connection refused")
            return await attr(*args, **kwargs)

        return call


async def test_an_outage_is_announced_once_and_jobs_go_on_after_it(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore()
    events: list[Event] = []
    finish = anyio.Event()

    async def running_through() -> str:
        await finish.wait()
        return "done"

    async with AsyncScheduler(store, clock=clock) as scheduler:  # type: ignore[arg-type]
        scheduler.add_listener(events.append)
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="tick")
        await scheduler.add_job(running_through, id="long")
        # wait_idle() would wait for "long": a running job is not idle.
        await anyio.wait_all_tasks_blocked()
        caplog.clear()
        store.down = True
        for _ in range(12):  # two minutes down: many failed attempts
            clock.advance(10)
            await anyio.wait_all_tasks_blocked()
        finish.set()  # a job that was running when the store went away ends meanwhile
        await wait_idle(scheduler)
        failed = [e for e in events if isinstance(e, StoreFailed)]
        assert len(failed) == 1
        assert "ConnectionError" in failed[0].error
        warnings = [r for r in caplog.records if "store failed" in r.getMessage()]
        assert len(warnings) == 1
        assert not [e for e in events if isinstance(e, StoreRecovered)]
        store.down = False
        clock.advance(30)  # the longest backoff
        await wait_idle(scheduler)
        (recovered,) = [e for e in events if isinstance(e, StoreRecovered)]
        assert recovered.downtime >= timedelta(minutes=2)
        tick = await scheduler.get_runs("tick")
        long = await scheduler.get_runs("long")
    # The backlog of "tick" ran once, coalesced, late; nothing of it was lost.
    assert tick[0].outcome is RunOutcome.SUCCESS
    assert tick[0].coalesced >= 11
    # The job that ran through the outage has its outcome stored after it.
    assert _attempts(long) == [(1, RunOutcome.SUCCESS)]
    assert long[0].result == "done"


async def test_after_an_outage_runs_are_claimed_only_a_lease_later(clock: FakeClock) -> None:
    # Every lease may have run out during the outage, also those of runs still going on
    # elsewhere: their owners get one lease to renew them before anyone claims them.
    store = FlakyStore()
    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:  # type: ignore[arg-type]
        await scheduler.pause()
        await _add_hourly(scheduler, clock)
        await _plant_dead_run(store.inner, clock, "j")
        await scheduler.resume()
        store.down = True
        clock.advance(60)
        await wait_idle(scheduler)
        store.down = False
        clock.advance(30)  # the loop's backoff ends: the store is back
        await wait_idle(scheduler)
        assert [r.outcome for r in await scheduler.get_runs("j")] == [None]
        clock.advance(31)
        await wait_idle(scheduler)
        assert [r.outcome for r in await scheduler.get_runs("j")] == [RunOutcome.ABANDONED]


async def test_an_idle_scheduler_notices_the_store_is_back(clock: FakeClock) -> None:
    # Its loop sleeps until a fire time a day away; the lease keeper's next round sees
    # the store answer again and wakes the loop, whose acquisition confirms it.
    store = FlakyStore()
    events: list[Event] = []
    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:  # type: ignore[arg-type]
        scheduler.add_listener(events.append)
        await scheduler.add_job(jobfuncs.async_add, "interval", days=1, args=[1], id="daily")
        clock.advance(40)  # past the lease after the start: the keeper claims (reads) now
        await wait_idle(scheduler)
        store.down = True
        clock.advance(10)  # the keeper's round fails
        await wait_idle(scheduler)
        assert [type(e) for e in events if isinstance(e, (StoreFailed, StoreRecovered))] == [
            StoreFailed
        ]
        store.down = False
        clock.advance(10)
        await wait_idle(scheduler)
    assert [type(e) for e in events if isinstance(e, (StoreFailed, StoreRecovered))] == [
        StoreFailed,
        StoreRecovered,
    ]


# ----------------------------------------------------------- graceful shutdown


async def test_shutdown_grace_cancels_what_is_left(clock: FakeClock) -> None:
    quick_done = anyio.Event()

    async def quick() -> None:
        await anyio.lowlevel.checkpoint()
        quick_done.set()

    async def stuck() -> None:
        await anyio.sleep_forever()

    scheduler = AsyncScheduler(clock=clock)
    async with scheduler:
        await scheduler.add_job(stuck, id="stuck")
        await scheduler.add_job(quick, id="quick")
        await anyio.wait_all_tasks_blocked()  # not wait_idle(): "stuck" never is
        with anyio.fail_after(5):
            await scheduler.shutdown(grace=0.05)
    stuck_runs = await scheduler.store.get_runs("stuck")
    assert _attempts(stuck_runs) == [(1, RunOutcome.ABANDONED)]
    assert quick_done.is_set()


async def test_a_run_cut_off_by_shutdown_is_handed_over_for_its_retry(clock: FakeClock) -> None:
    store = MemoryStore()
    attempts: list[int] = []

    async def stuck_once() -> None:
        attempts.append(current_run().attempt)
        if len(attempts) == 1:
            await anyio.sleep_forever()

    first = AsyncScheduler(store, clock=clock, lease_duration=30, scheduler_id="first")
    async with first:
        await first.add_job(
            stuck_once,
            "interval",
            hours=1,
            next_run_time=clock.now(),
            id="s",
            retry=Retry(attempts=2, backoff=1, **NO_JITTER),
        )
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):
            await first.shutdown(grace=0.01)
    # Not recorded: handed over, in flight with its lease given up.
    assert [r.outcome for r in await store.get_runs("s")] == [None]
    second = AsyncScheduler(store, clock=clock, lease_duration=30, scheduler_id="second")
    async with second:
        clock.advance(30)  # a scheduler that starts claims nothing for one lease
        await wait_idle(second)
        clock.advance(10)
        await wait_idle(second)
        runs = await second.get_runs("s")
    assert _attempts(runs) == [(2, RunOutcome.SUCCESS), (1, RunOutcome.ABANDONED)]
    assert runs[1].scheduler_id == "first"
    assert attempts == [1, 2]


async def test_shutdown_refuses_a_negative_grace(scheduler: AsyncScheduler) -> None:
    with pytest.raises(JobArgumentError, match="grace"):
        await scheduler.shutdown(grace=-1)
    with pytest.raises(JobArgumentError, match="grace"):
        await scheduler.shutdown(grace="soon")  # type: ignore[arg-type]


# ------------------------------------------------------ threads that time out


async def test_a_timed_out_threads_late_end_is_logged(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    go_on = threading.Event()

    def slow() -> int:
        go_on.wait(10)
        return 42

    caplog.set_level(logging.WARNING, "horae.scheduler")
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(slow, id="slow", timeout=0.01)
        with anyio.fail_after(5):
            await wait_idle(scheduler)
        (run,) = await scheduler.get_runs("slow")
        assert run.outcome is RunOutcome.TIMEOUT
        go_on.set()
        await _eventually(lambda: any("returned 42" in r.getMessage() for r in caplog.records))


async def _eventually(condition: Callable[[], bool]) -> None:
    # The thread ends on its own time: poll (bounded) for what it logs.
    with anyio.fail_after(5):
        while not condition():  # noqa: ASYNC110  (nothing to wait on: a log record)
            await anyio.sleep(0.01)


async def test_a_kept_job_goes_when_its_last_attempt_is_cut_off_by_shutdown(
    clock: FakeClock,
) -> None:
    # A one-off job kept for its retries: its last attempt, cut off by a shutdown, is
    # recorded abandoned (no attempt is left to hand over), and the job goes with it.
    store = MemoryStore()
    attempts: list[int] = []

    async def fails_then_hangs() -> None:
        attempts.append(current_run().attempt)
        if len(attempts) == 1:
            raise OSError("first attempt fails")
        await anyio.sleep_forever()

    removed: list[JobRemoved] = []
    scheduler = AsyncScheduler(store, clock=clock, lease_duration=30)
    scheduler.add_listener(removed.append, EVENT_JOB_REMOVED)
    async with scheduler:
        await scheduler.add_job(
            fails_then_hangs, id="once", retry=Retry(attempts=2, backoff=1, **NO_JITTER)
        )
        await wait_idle(scheduler)
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()
        assert attempts == [1, 2]
        with anyio.fail_after(5):
            await scheduler.shutdown(grace=0.01)
    assert _attempts(await store.get_runs("once")) == [
        (2, RunOutcome.ABANDONED),
        (1, RunOutcome.ERROR),
    ]
    with pytest.raises(JobLookupError):
        await store.get_job("once")
    assert [event.job_id for event in removed] == ["once"]


class _BreaksWhenRun:
    """An hourly trigger whose next() raises once ``broken`` is set (by the job)."""

    kind = "breaks-when-run"
    broken = False

    def __init__(self, start: datetime) -> None:
        self.start = start

    def next(self, after: datetime) -> datetime | None:
        if _BreaksWhenRun.broken:
            raise RuntimeError("the trigger broke")
        if after < self.start:
            return self.start
        return self.start + timedelta(hours=(after - self.start) // timedelta(hours=1) + 1)

    def describe(self) -> str:
        return "hourly, until it breaks"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


async def test_a_trigger_that_breaks_during_a_run_does_not_lose_its_outcome(
    clock: FakeClock,
) -> None:
    # The end of a run of a job kept for reruns asks the trigger whether it has ended;
    # a trigger that raises then must not keep the outcome from being stored.
    _BreaksWhenRun.broken = False

    async def breaks_it() -> None:
        _BreaksWhenRun.broken = True

    store = MemoryStore()
    try:
        async with AsyncScheduler(store, clock=clock) as scheduler:
            await scheduler.add_job(
                breaks_it, _BreaksWhenRun(clock.now()), id="j", retry=Retry(attempts=2)
            )
            await wait_idle(scheduler)
            runs = await scheduler.get_runs("j")
            assert [(r.attempt, r.outcome) for r in runs] == [(1, RunOutcome.SUCCESS)]
            assert await store.get_runs_in_flight() == []
    finally:
        _BreaksWhenRun.broken = False
