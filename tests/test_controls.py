"""Job-level controls on the fake clock: overlap policies, max_runs, pauses (with notes,
after failures), on_crash and Run.key, catch-up. The cross-process versions are in
tests/faults/test_controls.py."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
import pytest

from horae import (
    AsyncScheduler,
    Event,
    IntervalTrigger,
    JobArgumentError,
    JobCancelled,
    JobLookupError,
    JobRemoved,
    MemoryStore,
    Retry,
    Run,
    RunOutcome,
    SQLiteStore,
    current_run,
)
from horae._planning import plan_release
from horae.testing import FakeClock, wait_idle

from . import jobfuncs
from .conftest import START as _START

pytestmark = pytest.mark.anyio

START = datetime.fromisoformat(_START)


def _seconds(instant: datetime | None) -> float | None:
    return None if instant is None else (instant - START).total_seconds()


class Slow:
    """A job that takes ``duration`` seconds of the fake clock and logs its runs."""

    def __init__(self, clock: FakeClock, duration: float) -> None:
        self.clock = clock
        self.duration = duration
        self.log: list[tuple[float | None, float | None, float | None]] = []  # fire, start, end
        self.running = 0
        self.most_running = 0

    async def __call__(self) -> None:
        run = current_run()
        started = _seconds(self.clock.now())
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.clock.sleep(self.duration)
        finally:
            self.running -= 1
        self.log.append((_seconds(run.scheduled_time), started, _seconds(self.clock.now())))


async def _advance(clock: FakeClock, seconds: float, step: float = 1.0) -> None:
    """Move the clock in small steps, letting every task run at each (runs are busy, so
    wait_idle() does not apply)."""
    for _ in range(round(seconds / step)):
        clock.advance(step)
        await anyio.wait_all_tasks_blocked()


def _fire(run: Run) -> datetime:
    return run.scheduled_time


def _outcomes(runs: list[Run]) -> list[tuple[float | None, str | None]]:
    ordered = sorted(runs, key=lambda r: (r.scheduled_time, r.attempt))
    return [(_seconds(r.scheduled_time), r.outcome and r.outcome.value) for r in ordered]


# ------------------------------------------------------------------ bad values


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"overlap": "queue"}, r"overlap: 'queue' is not a valid choice; use one of 'skip'"),
        ({"on_crash": "retry"}, r"on_crash: 'retry' is not a valid choice; use one of 'abandon'"),
        ({"max_runs": 0}, r"max_runs: 0 is not allowed; give a whole number of at least 1"),
        ({"max_runs": -3}, r"max_runs: -3 is not allowed"),
        ({"max_runs": 2.5}, r"max_runs: 2.5 is not allowed"),
        ({"pause_after_failures": 0}, r"pause_after_failures: 0 is not allowed"),
        (
            {"overlap": "allow_all", "max_instances": 3},
            r"max_instances: 3 does not apply with overlap='allow_all'",
        ),
    ],
)
async def test_bad_controls_are_refused_at_add_job(
    scheduler: AsyncScheduler, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(JobArgumentError, match=message):
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1], **options)
    assert await scheduler.get_jobs() == []


async def test_bad_controls_in_job_defaults_and_modify_job(clock: FakeClock) -> None:
    with pytest.raises(JobArgumentError, match=r"overlap: 'buffer' is not a valid choice"):
        AsyncScheduler(clock=clock, job_defaults={"overlap": "buffer"})
    async with AsyncScheduler(clock=clock, job_defaults={"overlap": "buffer_all"}) as scheduler:
        job = await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1])
        assert job.overlap == "buffer_all"
        with pytest.raises(JobArgumentError, match=r"on_crash: 'later'"):
            await scheduler.modify_job(job.id, on_crash="later")
        assert (await scheduler.modify_job(job.id, max_runs=4)).max_runs == 4


async def test_a_pause_note_must_be_text(scheduler: AsyncScheduler) -> None:
    job = await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1])
    with pytest.raises(JobArgumentError, match="note: 42 is not a string"):
        await scheduler.pause_job(job.id, note=42)  # type: ignore[arg-type]


# -------------------------------------------------------------- overlap policies


async def _overlapping(clock: FakeClock, seconds: float, **options: Any) -> tuple[Slow, list[Run]]:
    """An every-10-s job that takes 25 s, for ``seconds`` of the clock."""
    slow = Slow(clock, 25)
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(slow, "interval", seconds=10, id="j", **options)
        await _advance(clock, seconds)
        runs = await scheduler.get_runs("j")
        await scheduler.remove_job("j")
        await _advance(clock, 30)
    return slow, runs


async def test_skip_records_the_fire_times_that_come_while_a_run_goes_on(
    clock: FakeClock,
) -> None:
    slow, runs = await _overlapping(clock, 75)
    assert slow.log[:2] == [(10, 10, 35), (40, 40, 65)]
    assert _outcomes(runs)[:5] == [
        (10, "success"),
        (20, "skipped"),
        (30, "skipped"),
        (40, "success"),
        (50, "skipped"),
    ]


async def test_buffer_one_runs_one_waiting_fire_time_when_the_run_ends(clock: FakeClock) -> None:
    slow, runs = await _overlapping(clock, 90, overlap="buffer_one", coalesce=False)
    # 20 waits for the run of 10; 30 comes while 20 waits: skipped. 20 starts at 35.
    assert slow.log[:2] == [(10, 10, 35), (20, 35, 60)]
    assert _outcomes(runs)[:5] == [
        (10, "success"),
        (20, "success"),
        (30, "skipped"),
        (40, "success"),
        (50, "skipped"),
    ]
    assert slow.most_running == 1


async def test_buffer_one_with_coalesce_runs_the_latest_and_counts_the_others(
    clock: FakeClock,
) -> None:
    slow, runs = await _overlapping(clock, 40, overlap="buffer_one")
    assert slow.log[:2] == [(10, 10, 35), (30, 35, 60)]
    (covering,) = [r for r in runs if _seconds(r.scheduled_time) == 30]
    assert covering.coalesced == 1  # the fire time of 20
    assert all(r.outcome is not RunOutcome.SKIPPED for r in runs)


async def test_buffer_all_runs_every_fire_time_in_turn(clock: FakeClock) -> None:
    slow, runs = await _overlapping(clock, 130, overlap="buffer_all")
    fire_times = [fire for fire, _, _ in slow.log]
    assert fire_times == [10, 20, 30, 40, 50]
    for (_, _, end), (_, start, _) in zip(slow.log, slow.log[1:], strict=False):
        assert start == end  # each starts as the one before ends, never alongside
    assert {r.outcome for r in runs} <= {RunOutcome.SUCCESS, None}
    assert all(r.coalesced == 0 for r in runs)  # buffer_all never coalesces
    assert slow.most_running == 1


async def test_buffer_all_fills_max_instances_slots(clock: FakeClock) -> None:
    slow, _ = await _overlapping(clock, 60, overlap="buffer_all", max_instances=2)
    assert slow.most_running == 2
    assert [fire for fire, _, _ in slow.log][:3] == [10, 20, 30]
    assert slow.log[2][1] == 35  # 30 waited for a slot: the run of 10 ended at 35


async def test_cancel_other_cancels_the_run_in_progress(clock: FakeClock) -> None:
    slow = Slow(clock, 25)
    events: list[Event] = []
    async with AsyncScheduler(clock=clock) as scheduler:
        scheduler.add_listener(events.append)
        await scheduler.add_job(slow, "interval", seconds=10, id="j", overlap="cancel_other")
        await _advance(clock, 45)
        runs = await scheduler.get_runs("j")
        await scheduler.remove_job("j")
        await _advance(clock, 30)
    assert _outcomes(runs)[:4] == [
        (10, "cancelled"),
        (20, "cancelled"),
        (30, "cancelled"),
        (40, None),
    ]
    by_time = {_seconds(r.scheduled_time): r for r in runs}
    assert _seconds(by_time[10].finished_at) == 20
    assert "cancelled by its job's fire time" in (by_time[10].error or "")
    assert _seconds(by_time[20].started_at) == 20  # at once: the slot was freed
    cancelled = [e for e in events if isinstance(e, JobCancelled)]
    assert [_seconds(e.scheduled_time) for e in cancelled][:3] == [10, 20, 30]
    assert slow.most_running == 1


class _CountingStore(MemoryStore):
    """A memory store that counts acquisitions, and releases that ask for a hold."""

    def __init__(self) -> None:
        super().__init__()
        self.acquisitions = 0
        self.holds = 0

    async def acquire_jobs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> Any:
        self.acquisitions += 1
        return await super().acquire_jobs(scheduler_id, now, limit, lease_duration)

    async def release_jobs(self, scheduler_id: str, releases: Any) -> Any:
        self.holds += sum(1 for release in releases if release.hold_while_running)
        return await super().release_jobs(scheduler_id, releases)


@pytest.mark.parametrize("overlap", ["buffer_one", "buffer_all", "cancel_other"])
async def test_runs_that_never_overlap_cost_one_acquisition_each(
    clock: FakeClock, overlap: str
) -> None:
    # A job is held only when a fire time finds it busy: runs that end before the next
    # fire time cost no hold, no freeing, and no acquisition but their own.
    store = _CountingStore()
    slow = Slow(clock, 5)
    async with AsyncScheduler(store, clock=clock) as scheduler:
        await scheduler.add_job(slow, "interval", seconds=10, id="j", overlap=overlap)
        await wait_idle(scheduler)
        store.acquisitions = 0
        await _advance(clock, 56)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("j")
    assert _outcomes(runs) == [(t, "success") for t in (10, 20, 30, 40, 50)]
    assert store.acquisitions == 5
    assert store.holds == 0


class _OthersOnlyStore(MemoryStore):
    """A memory store that wakes no scheduler when a run frees a held job: like the
    PostgreSQL and Redis stores, which wake only the schedulers other than the one
    whose run ended (here, there are none)."""

    def _free(self, job_id: str) -> None:
        contexts, self._contexts = self._contexts, {}
        try:
            super()._free(job_id)
        finally:
            self._contexts = contexts


async def test_the_end_of_a_run_starts_a_fire_time_that_waited_for_it(clock: FakeClock) -> None:
    # A next run time set by hand during a run finds the job busy: the job is held, and
    # the scheduler whose run frees it looks for it at once, although the store wakes
    # only the others and no fire time of the trigger came meanwhile.
    slow = Slow(clock, 20)
    async with AsyncScheduler(_OthersOnlyStore(), clock=clock) as scheduler:
        await scheduler.add_job(slow, "interval", hours=1, id="j", overlap="buffer_one")
        clock.advance(3600)
        await anyio.wait_all_tasks_blocked()
        await _advance(clock, 5)
        await scheduler.modify_job("j", next_run_time=clock.now())
        await _advance(clock, 40)
        await scheduler.remove_job("j")
        await _advance(clock, 25)
    assert slow.log == [(3600, 3600, 3620), (3605, 3620, 3640)]


class _SlowRetryStore(MemoryStore):
    """A memory store whose ``finish_run`` with a retry waits until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.go = anyio.Event()

    async def finish_run(self, run: Run, *, retry: Any = None, expires_at: Any = None) -> None:
        if retry is not None:
            await self.go.wait()
        await super().finish_run(run, retry=retry, expires_at=expires_at)


async def test_cancel_other_cancels_a_retry_asked_for_while_its_run_was_recorded(
    clock: FakeClock,
) -> None:
    # The run of 10 fails and its outcome is being stored with its retry when 20 comes
    # and asks to cancel it: the retry is cancelled before it starts.
    store = _SlowRetryStore()
    attempts: list[tuple[float | None, int]] = []

    async def fails() -> None:
        run = current_run()
        attempts.append((_seconds(run.scheduled_time), run.attempt))
        raise ValueError("down")

    async with AsyncScheduler(store, clock=clock) as scheduler:
        await scheduler.add_job(
            fails,
            "interval",
            seconds=10,
            id="j",
            overlap="cancel_other",
            retry=Retry(attempts=2, backoff=3, jitter=0),
        )
        await _advance(clock, 10)  # 10 fails; its outcome waits for the store
        await _advance(clock, 10)  # 20 is due, finds the job busy, asks to cancel 10
        store.go.set()
        await _advance(clock, 5)
        runs = await scheduler.get_runs("j")
        await scheduler.remove_job("j")
    assert attempts[:2] == [(10, 1), (20, 1)]
    retry = next(r for r in runs if _seconds(r.scheduled_time) == 10 and r.attempt == 2)
    assert retry.outcome is RunOutcome.CANCELLED
    assert retry.started_at is None
    assert "cancelled by its job's fire time" in (retry.error or "")


async def test_allow_all_lets_runs_overlap(clock: FakeClock) -> None:
    slow, runs = await _overlapping(clock, 45, overlap="allow_all")
    assert slow.most_running == 3
    assert RunOutcome.SKIPPED not in {r.outcome for r in runs}


async def test_a_thread_run_is_recorded_cancelled_at_once(clock: FakeClock) -> None:
    # A thread cannot be stopped: as with a timeout, its run ends (cancelled) and frees
    # its slot at once; the thread finishes on its own.
    release = threading.Event()
    started = threading.Semaphore(0)

    def stuck() -> None:
        started.release()
        release.wait(10)

    try:
        async with AsyncScheduler(clock=clock) as scheduler:
            await scheduler.add_job(stuck, "interval", seconds=10, id="t", overlap="cancel_other")
            clock.advance(10)
            await anyio.to_thread.run_sync(started.acquire)
            clock.advance(10)
            await anyio.to_thread.run_sync(started.acquire)  # the next run started
            runs = await scheduler.get_runs("t")
            await scheduler.remove_job("t")
            release.set()
    finally:
        release.set()
    assert _outcomes(runs) == [(10, "cancelled"), (20, None)]


# ------------------------------------------------------------ max_runs, pauses


async def test_max_runs_removes_the_job_after_that_many_runs(clock: FakeClock) -> None:
    events: list[Event] = []
    async with AsyncScheduler(clock=clock) as scheduler:
        scheduler.add_listener(events.append)
        await scheduler.add_job(
            jobfuncs.async_add, "interval", seconds=10, args=[1], id="m", max_runs=3
        )
        for _ in range(5):
            clock.advance(10)
            await wait_idle(scheduler)
        runs = await scheduler.get_runs("m")
        with pytest.raises(JobLookupError):
            await scheduler.get_job("m")
    assert _outcomes(runs) == [(10, "success"), (20, "success"), (30, "success")]
    assert [e.job_id for e in events if isinstance(e, JobRemoved)] == ["m"]


async def test_max_runs_counts_started_runs_not_retries(clock: FakeClock) -> None:
    calls: list[int] = []

    async def fails_once() -> None:
        calls.append(current_run().attempt)
        if len(calls) == 1:
            raise ValueError("first")

    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(
            fails_once,
            "interval",
            seconds=10,
            id="m",
            max_runs=2,
            retry=Retry(attempts=2, backoff=1, jitter=0),
        )
        for _ in range(6):
            clock.advance(5)
            await wait_idle(scheduler)
        runs = await scheduler.get_runs("m")
    assert [(r.attempt, r.outcome) for r in sorted(runs, key=lambda r: r.finished_at)] == [  # type: ignore[arg-type, return-value]
        (1, RunOutcome.ERROR),
        (2, RunOutcome.SUCCESS),
        (1, RunOutcome.SUCCESS),
    ]


async def test_pause_with_a_note_and_resume(scheduler: AsyncScheduler) -> None:
    job = await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1], id="p")
    paused = await job.pause(note="until the vendor fixes their API")
    assert paused.paused
    assert (await scheduler.get_job("p")).pause_note == "until the vendor fixes their API"
    resumed = await scheduler.resume_job("p")
    assert not resumed.paused
    assert resumed.pause_note is None
    assert (await scheduler.get_job("p")).pause_note is None


async def test_a_job_is_paused_after_consecutive_failures(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(
            jobfuncs.async_fail,
            "interval",
            seconds=10,
            id="f",
            pause_after_failures=3,
            retry=Retry(attempts=2, backoff=1, jitter=0),
        )
        for _ in range(12):
            clock.advance(5)
            await wait_idle(scheduler)
        job = await scheduler.get_job("f")
        runs = await scheduler.get_runs("f")
    assert job.paused
    assert job.pause_note is not None
    assert "paused after 3 failed fire times in a row" in job.pause_note
    # Three fire times, two attempts each; then nothing more.
    assert len({r.scheduled_time for r in runs}) == 3
    assert len(runs) == 6


async def test_a_success_resets_the_failure_count(clock: FakeClock) -> None:
    outcomes = iter([False, False, True, False, False, True, False])

    async def sometimes() -> None:
        if not next(outcomes, True):
            raise ValueError("no")

    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(sometimes, "interval", seconds=10, id="s", pause_after_failures=3)
        for _ in range(7):
            clock.advance(10)
            await wait_idle(scheduler)
        assert not (await scheduler.get_job("s")).paused


async def test_skipped_fire_times_between_failures_do_not_break_the_count(
    clock: FakeClock,
) -> None:
    # Every run takes 25 s of a 10 s interval and fails: two fire times are skipped
    # between each two failures. They neither count nor end the count.
    async def slow_fail() -> None:
        await clock.sleep(25)
        raise ValueError("down")

    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(slow_fail, "interval", seconds=10, id="f", pause_after_failures=2)
        await _advance(clock, 100)
        job = await scheduler.get_job("f")
        runs = await scheduler.get_runs("f")
        await scheduler.remove_job("f")
        await _advance(clock, 30)  # a run still going on (if it was not paused) ends
    assert job.paused
    assert "paused after 2 failed fire times in a row" in (job.pause_note or "")
    # Paused when the run of 40 failed (at 65): nothing ran after it.
    assert [t for t, outcome in _outcomes(runs) if outcome == "error"] == [10, 40]
    assert [t for t, outcome in _outcomes(runs) if outcome == "skipped"] == [20, 30, 50, 60]


# ------------------------------------------------------------ on_crash, Run.key


async def _crash_one_run(store: MemoryStore, clock: FakeClock, job_id: str) -> Run:
    """A scheduler "dead" acquires the job's fire time, starts its run, and dies."""
    (lease,) = await store.acquire_jobs("dead", clock.now(), limit=1, lease_duration=30)
    release = plan_release(lease, clock.now(), "dead")
    await store.release_jobs("dead", [release])
    (run,) = release.started
    return run


async def test_on_crash_rerun_runs_an_abandoned_run_again_with_the_same_key(
    clock: FakeClock,
) -> None:
    store = MemoryStore()
    seen: list[Run] = []

    async def idempotent() -> None:
        seen.append(current_run())

    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:
        await scheduler.pause()
        await scheduler.add_job(idempotent, "interval", hours=1, id="j", on_crash="rerun")
        clock.advance(3600)
        dead = await _crash_one_run(store, clock, "j")
        await scheduler.resume()
        clock.advance(31)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("j")
    (rerun,) = seen
    assert rerun.attempt == 2
    assert rerun.key == dead.key
    assert rerun.id != dead.id
    assert [(r.attempt, r.outcome) for r in runs] == [
        (2, RunOutcome.SUCCESS),
        (1, RunOutcome.ABANDONED),
    ]


async def test_on_crash_abandon_overrides_a_retry_policy(clock: FakeClock) -> None:
    store = MemoryStore()
    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:
        await scheduler.pause()
        await scheduler.add_job(
            jobfuncs.async_add,
            "interval",
            hours=1,
            args=[1],
            id="j",
            on_crash="abandon",
            retry=Retry(attempts=3, abandoned=True),
        )
        clock.advance(3600)
        await _crash_one_run(store, clock, "j")
        await scheduler.resume()
        clock.advance(31)
        await wait_idle(scheduler)
        runs = await scheduler.get_runs("j")
    assert [(r.attempt, r.outcome) for r in runs] == [(1, RunOutcome.ABANDONED)]


def test_run_key_names_the_fire_time_across_attempts() -> None:
    when = START + timedelta(hours=1)
    first = Run(job_id="j", scheduled_time=when)
    second = Run(job_id="j", scheduled_time=when.astimezone(), attempt=2)
    assert first.id != second.id
    assert first.key == second.key
    assert Run(job_id="k", scheduled_time=when).key != first.key
    assert Run(job_id="j", scheduled_time=when + timedelta(seconds=1)).key != first.key


# --------------------------------------------------------- stored with the job


async def test_the_controls_are_stored_with_the_job(tmp_path: Path, clock: FakeClock) -> None:
    async with AsyncScheduler(SQLiteStore(tmp_path / "jobs.db"), clock=clock) as scheduler:
        await scheduler.add_job(
            "tests.jobfuncs:async_add",
            "interval",
            seconds=10,
            args=[1],
            id="c",
            overlap="buffer_all",
            on_crash="rerun",
            max_runs=7,
            pause_after_failures=2,
        )
        await scheduler.pause_job("c", note="maintenance")
    async with AsyncScheduler(SQLiteStore(tmp_path / "jobs.db"), clock=clock) as scheduler:
        job = await scheduler.get_job("c")
    assert (job.overlap, job.on_crash, job.max_runs, job.pause_after_failures) == (
        "buffer_all",
        "rerun",
        7,
        2,
    )
    assert job.pause_note == "maintenance"


# --------------------------------------------------------------------- backfill


async def test_backfill_runs_each_past_fire_time_once_in_order(clock: FakeClock) -> None:
    seen: list[tuple[float | None, int]] = []

    async def report() -> None:
        run = current_run()
        seen.append((_seconds(run.scheduled_time), run.attempt))

    async with AsyncScheduler(clock=clock, timezone="UTC") as scheduler:
        clock.advance(3600)
        await scheduler.add_job(report, "cron", minute="*/10", id="r")
        runs = await scheduler.backfill("r", START, START + timedelta(minutes=30))
        assert seen == [(0, 1), (600, 1), (1200, 1), (1800, 1)]
        assert [r.outcome for r in runs] == [RunOutcome.SUCCESS] * 4
        history = await scheduler.get_runs("r")
        assert sorted(_seconds(r.scheduled_time) or 0 for r in history) == [0, 600, 1200, 1800]
        # Again over a wider window: only the fire times not done yet run.
        seen.clear()
        again = await scheduler.backfill("r", START, START + timedelta(minutes=50))
        assert seen == [(2400, 1), (3000, 1)]
        assert len(again) == 2
        # Unless asked to run the done ones again.
        seen.clear()
        await scheduler.backfill("r", START, START + timedelta(minutes=10), rerun_succeeded=True)
        assert seen == [(0, 1), (600, 1)]


async def test_backfill_runs_failed_fire_times_again(clock: FakeClock) -> None:
    failing = {0.0, 1200.0}

    async def flaky() -> None:
        when = _seconds(current_run().scheduled_time)
        if when in failing:
            failing.discard(when)  # fails the first time only
            raise ValueError(f"at {when}")

    async with AsyncScheduler(clock=clock, timezone="UTC") as scheduler:
        clock.advance(3600)
        await scheduler.add_job(flaky, "cron", minute="*/10", id="f", next_run_time=None)
        first = await scheduler.backfill("f", START, START + timedelta(minutes=20))
        assert [r.outcome for r in first] == [
            RunOutcome.ERROR,
            RunOutcome.SUCCESS,
            RunOutcome.ERROR,
        ]
        second = await scheduler.backfill("f", START, START + timedelta(minutes=20))
        assert [(_seconds(r.scheduled_time), r.outcome) for r in second] == [
            (0, RunOutcome.SUCCESS),
            (1200, RunOutcome.SUCCESS),
        ]
        assert (await scheduler.get_job("f")).paused  # a paused job stays paused


async def test_backfill_sees_successes_behind_many_later_runs(clock: FakeClock) -> None:
    # 151 runs were recorded after those of the first window: as long as the store
    # keeps them, the first window's successes are found and not run again.
    store = MemoryStore(run_retention=1000)
    async with AsyncScheduler(store, clock=clock, timezone="UTC") as scheduler:
        clock.advance(3600)
        await scheduler.add_job(
            jobfuncs.async_add,
            "interval",
            seconds=10,
            start_date=START,
            args=[1],
            id="b",
            next_run_time=None,
        )
        first = await scheduler.backfill("b", START, START + timedelta(seconds=20))
        assert len(first) == 3
        later = await scheduler.backfill(
            "b", START + timedelta(seconds=100), START + timedelta(seconds=1600)
        )
        assert len(later) == 151
        assert await scheduler.backfill("b", START, START + timedelta(seconds=20)) == []


async def test_a_failing_backfill_does_not_pause_the_job(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, timezone="UTC") as scheduler:
        clock.advance(3600)
        await scheduler.add_job(
            jobfuncs.async_fail, "cron", minute="*/10", id="f", pause_after_failures=2
        )
        runs = await scheduler.backfill("f", START, START + timedelta(minutes=30))
        assert [r.outcome for r in runs] == [RunOutcome.ERROR] * 4
        assert not (await scheduler.get_job("f")).paused
        clock.advance(600)  # the job's own first failure: one in a row
        await wait_idle(scheduler)
        assert not (await scheduler.get_job("f")).paused
        clock.advance(600)  # its second
        await wait_idle(scheduler)
        assert (await scheduler.get_job("f")).paused


async def test_backfill_refuses_bad_windows(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, timezone="UTC") as scheduler:
        clock.advance(3600)
        await scheduler.add_job(jobfuncs.async_add, "cron", second="*", args=[1], id="i")
        with pytest.raises(JobArgumentError, match=r"end: .* is before start"):
            await scheduler.backfill("i", START + timedelta(minutes=5), START)
        with pytest.raises(JobArgumentError, match="is after now"):
            await scheduler.backfill("i", START, START + timedelta(hours=2))
        with pytest.raises(JobArgumentError, match="more than 10,000 fire times"):
            await scheduler.backfill("i", "2026-12-31T20:00:00", START + timedelta(minutes=59))
        with pytest.raises(JobLookupError):
            await scheduler.backfill("nope", START, START)


# ------------------------------------------------- catch-up across restarts


async def test_replacing_a_job_at_start_keeps_its_missed_fire_time(
    tmp_path: Path, clock: FakeClock
) -> None:
    # A program that adds its jobs with replace_existing=True at every start: the fire
    # time that passed while it was down runs late, once, rather than vanish.
    path = tmp_path / "jobs.db"

    async def start_once() -> list[Run]:
        scheduler = AsyncScheduler(SQLiteStore(path), clock=clock, timezone="UTC")
        scheduler_jobs = scheduler.scheduled_job(
            "cron", minute=0, id="hourly", replace_existing=True
        )
        scheduler_jobs(jobfuncs.whoami)
        async with scheduler:
            await wait_idle(scheduler)
            return await scheduler.get_runs("hourly")

    clock.advance(60)
    assert await start_once() == []
    clock.advance(timedelta(hours=2, minutes=30))  # down over 01:00 and 02:00
    runs = await start_once()
    assert [(_seconds(r.scheduled_time), r.outcome, r.coalesced) for r in runs] == [
        (7200, RunOutcome.SUCCESS, 1)
    ]


async def test_replacing_a_job_with_a_new_schedule_starts_it_afresh(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, timezone="UTC") as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", hours=1, args=[1], id="j")
        await scheduler.pause_job("j", note="kept")
        same = await scheduler.add_job(
            jobfuncs.async_add, "interval", hours=1, args=[2], id="j", replace_existing=True
        )
        assert same.paused
        assert same.pause_note == "kept"
        other = await scheduler.add_job(
            jobfuncs.async_add, "interval", hours=2, args=[2], id="j", replace_existing=True
        )
        assert other.next_run_time == clock.now() + timedelta(hours=2)
        assert other.pause_note is None


async def test_replacing_an_interval_with_another_start_date_takes_the_new_one(
    clock: FakeClock,
) -> None:
    # An interval given no start_date starts from now, anew at every add_job: that
    # start is not a change of schedule. One given a start_date that changed is.
    store = MemoryStore()

    def at(minutes: int) -> datetime:
        return START + timedelta(minutes=minutes)

    async with AsyncScheduler(store, clock=clock, timezone="UTC") as scheduler:
        await scheduler.pause()
        options: dict[str, Any] = {"hours": 1, "args": [1], "id": "j"}
        await scheduler.add_job(jobfuncs.async_add, "interval", start_date=at(30), **options)
        clock.advance(timedelta(minutes=40))  # 00:30 is due, and waits
        same = await scheduler.add_job(
            jobfuncs.async_add, "interval", start_date=at(30), replace_existing=True, **options
        )
        assert same.next_run_time == at(30)  # the same schedule: its pending fire time stays
        moved = await scheduler.add_job(
            jobfuncs.async_add, "interval", start_date=at(45), replace_existing=True, **options
        )
        assert moved.next_run_time == at(45)
        unset = await scheduler.add_job(
            jobfuncs.async_add, "interval", replace_existing=True, **options
        )
        assert unset.next_run_time == at(45)  # no start given: the stored place stays
    # The same for the jobs added before a scheduler starts.
    scheduler = AsyncScheduler(store, clock=clock, timezone="UTC")
    await scheduler.add_job(
        jobfuncs.async_add, "interval", start_date=at(50), replace_existing=True, **options
    )
    async with scheduler:
        await scheduler.pause()
        assert (await scheduler.get_job("j")).next_run_time == at(50)


async def test_an_interval_without_a_start_keeps_its_place_however_it_is_given(
    clock: FakeClock,
) -> None:
    # start_date=None (read from a config, say) and an IntervalTrigger built without a
    # start are no start given either: re-adding the job keeps its place and its pause.
    async with AsyncScheduler(clock=clock, timezone="UTC") as scheduler:
        for index, (trigger, args) in enumerate(
            [
                ("interval", {"hours": 1, "start_date": None}),
                (IntervalTrigger(hours=1, timezone="UTC"), {}),
            ]
        ):
            job_id = f"j{index}"
            await scheduler.add_job(jobfuncs.async_add, trigger, args=[1], id=job_id, **args)
            await scheduler.pause_job(job_id, note="by the operator")
            clock.advance(60)
            again = await scheduler.add_job(
                jobfuncs.async_add, trigger, args=[1], id=job_id, replace_existing=True, **args
            )
            assert again.paused, job_id
            assert again.pause_note == "by the operator"
        # A start given that differs is a new schedule, for an instance too.
        start = clock.now() + timedelta(minutes=5)
        moved = await scheduler.add_job(
            jobfuncs.async_add,
            IntervalTrigger(hours=1, start_date=start, timezone="UTC"),
            args=[1],
            id="j1",
            replace_existing=True,
        )
        assert not moved.paused
        assert moved.next_run_time == start


def test_an_interval_trigger_knows_whether_its_start_was_given() -> None:
    defaulted = IntervalTrigger(hours=1, timezone="UTC")
    given = IntervalTrigger(hours=1, start_date=defaulted.start_date, timezone="UTC")
    assert defaulted.start_defaulted
    assert not given.start_defaulted
    assert defaulted == given  # not compared
    assert not IntervalTrigger.from_dict(defaulted.to_dict()).start_defaulted  # not stored
    evolved = attrs.evolve(defaulted, minutes=10)  # not an argument of __init__
    assert evolved.interval == timedelta(hours=1, minutes=10)
    assert not evolved.start_defaulted


# ---------------------------------------------------------------------- explain


async def test_explain_tells_why_fire_times_did_not_run(clock: FakeClock) -> None:
    slow = Slow(clock, 25)
    async with AsyncScheduler(clock=clock, timezone="UTC") as scheduler:
        await scheduler.add_job(slow, "interval", seconds=10, id="j")
        await _advance(clock, 36)
        await scheduler.pause_job("j", note="vendor outage")
        text = str(await scheduler.explain("j", limit=5))
        with pytest.raises(JobLookupError):
            await scheduler.explain("nope")
    assert "vendor outage" in text
    assert "skipped" in text


# -------------------------------------------------------------- DST choice


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (
            {},
            ["2026-03-07T02:30:00-05:00", "2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"],
        ),
        (
            {"dst_gap": "skip"},
            ["2026-03-07T02:30:00-05:00", "2026-03-09T02:30:00-04:00"],
        ),
    ],
)
async def test_a_job_chooses_what_a_dst_gap_does(
    policy: dict[str, str], expected: list[str]
) -> None:
    clock = FakeClock("2026-03-07T00:00:00-05:00")
    async with AsyncScheduler(clock=clock, timezone="America/New_York") as scheduler:
        await scheduler.add_job(
            jobfuncs.async_add, "cron", hour=2, minute=30, args=[1], id="d", **policy
        )
        for _ in range(3 * 24):
            clock.advance(3600)
            await wait_idle(scheduler)
        runs = await scheduler.get_runs("d")
    assert [r.scheduled_time.isoformat() for r in sorted(runs, key=_fire)] == expected
    assert all(r.outcome is RunOutcome.SUCCESS and r.coalesced == 0 for r in runs)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({}, ["2026-10-25T01:30:00+01:00"]),
        ({"dst_repeated": "both"}, ["2026-10-25T01:30:00+01:00", "2026-10-25T01:30:00+00:00"]),
    ],
)
async def test_a_job_chooses_what_a_repeated_hour_does(
    policy: dict[str, str], expected: list[str]
) -> None:
    clock = FakeClock("2026-10-24T23:00:00+01:00")
    async with AsyncScheduler(clock=clock, timezone="Europe/London") as scheduler:
        await scheduler.add_job(
            jobfuncs.async_add, "cron", hour=1, minute=30, args=[1], id="r", **policy
        )
        for _ in range(4 * 6):
            clock.advance(600)
            await wait_idle(scheduler)
        runs = await scheduler.get_runs("r")
    assert [r.scheduled_time.isoformat() for r in sorted(runs, key=_fire)] == expected


async def test_failures_before_a_resume_are_forgiven(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(
            jobfuncs.async_fail, "interval", seconds=10, id="f", pause_after_failures=2
        )
        for _ in range(2):
            clock.advance(10)
            await wait_idle(scheduler)
        assert (await scheduler.get_job("f")).paused
        await scheduler.resume_job("f")
        clock.advance(10)
        await wait_idle(scheduler)
        assert not (await scheduler.get_job("f")).paused  # one failure since the resume
        clock.advance(10)
        await wait_idle(scheduler)
        assert (await scheduler.get_job("f")).paused


async def test_a_resume_during_a_failing_run_forgives_that_run_too(clock: FakeClock) -> None:
    # The run of 20 started before the resume, and fails after it: it was leased with
    # no resumed_at, but the job as stored has one, and that is what counts.
    async def slow_fail() -> None:
        await clock.sleep(5)
        raise ValueError("down")

    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(slow_fail, "interval", seconds=10, id="f", pause_after_failures=2)
        await _advance(clock, 21)  # 10 failed at 15; the run of 20 goes on
        await scheduler.pause_job("f")
        await scheduler.resume_job("f")
        await _advance(clock, 5)  # the run of 20 fails
        assert not (await scheduler.get_job("f")).paused
        await _advance(clock, 10)  # 30 fails: the first failure since the resume
        assert not (await scheduler.get_job("f")).paused
        await _advance(clock, 10)  # 40 fails: the second
        job = await scheduler.get_job("f")
        runs = await scheduler.get_runs("f")
    assert job.paused
    assert [t for t, outcome in _outcomes(runs) if outcome == "error"] == [10, 20, 30, 40]


class _StealingStore(MemoryStore):
    """A memory store where the runs in ``stolen`` belong to another scheduler (as if
    it took them over while this one stalled)."""

    def __init__(self) -> None:
        super().__init__()
        self.stolen: set[object] = set()

    async def extend_runs(self, scheduler_id: str, run_ids: Any, expires_at: datetime) -> Any:
        lost = await super().extend_runs(scheduler_id, run_ids, expires_at)
        return lost | {run_id for run_id in run_ids if run_id in self.stolen}


async def test_a_retry_taken_over_during_its_wait_is_not_started_here(clock: FakeClock) -> None:
    store = _StealingStore()
    attempts: list[int] = []

    async def fails() -> None:
        attempts.append(current_run().attempt)
        raise ValueError("no")

    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:
        await scheduler.add_job(
            fails, id="r", retry=Retry(attempts=2, backoff=100, jitter=0), next_run_time=None
        )
        await scheduler.modify_job("r", next_run_time=clock.now())
        await wait_idle(scheduler)
        (waiting,) = [r for r in await store.get_runs("r") if r.outcome is None]
        store.stolen.add(waiting.id)
        clock.advance(100)  # the keeper and the retry wake together
        await wait_idle(scheduler)
    assert attempts == [1]


# ---------------------------------------------------------------- actors


async def test_job_events_name_who_changed_the_job(clock: FakeClock) -> None:
    from horae import JobModified
    from horae._event_codec import event_from_json, event_to_json
    from horae.serializers import JSONSerializer

    events: list[Event] = []
    async with AsyncScheduler(clock=clock) as scheduler:
        scheduler.add_listener(events.append)
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="j")
        await scheduler.add_job(
            jobfuncs.async_fail, "interval", seconds=10, id="f", pause_after_failures=1
        )
        await scheduler.pause_job("j", actor="alice")
        await scheduler.resume_job("j", actor="bob")
        await scheduler.modify_job("j", name="renamed", actor="carol")
        await scheduler.modify_job("j", name="again")
        with pytest.raises(JobArgumentError, match="actor: 7 is not a string"):
            await scheduler.pause_job("j", actor=7)  # type: ignore[arg-type]
        clock.advance(10)
        await wait_idle(scheduler)
        await scheduler.remove_job("j", actor="dave")
    changes = [(e.job_id, e.actor) for e in events if isinstance(e, (JobModified, JobRemoved))]
    assert changes == [
        ("j", "alice"),
        ("j", "bob"),
        ("j", "carol"),
        ("j", ""),
        ("f", "horae"),  # paused by pause_after_failures
        ("j", "dave"),
    ]
    # The actor travels to other schedulers with the event.
    removed = next(e for e in events if isinstance(e, JobRemoved))
    serializer = JSONSerializer()
    assert event_from_json(event_to_json(removed, serializer), serializer) == removed
