"""AsyncScheduler on the memory store, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import io
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from horae import (
    EVENT_JOB_ABANDONED,
    EVENT_JOB_ADDED,
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    AsyncScheduler,
    ConflictingIdError,
    CronTrigger,
    Event,
    ExecutorLookupError,
    HoraeError,
    IntervalTrigger,
    InvalidCallableError,
    JobAbandoned,
    JobAdded,
    JobArgumentError,
    JobError,
    JobExecuted,
    JobLookupError,
    JobMissed,
    JobModified,
    JobRemoved,
    JobSkipped,
    JobSubmitted,
    Run,
    RunOutcome,
    SchedulerNotRunningError,
    SchedulerRunningError,
    SchedulerStarted,
    SchedulerStopped,
    ThreadExecutor,
    TriggerError,
    current_run,
)
from horae.stores.base import Lease
from horae.stores.memory import MemoryStore
from horae.testing import FakeClock, wait_idle

from . import jobfuncs

pytestmark = pytest.mark.anyio

UTC = timezone.utc
T0 = datetime(2027, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def outcomes(scheduler: AsyncScheduler, job_id: str) -> list[tuple[datetime, RunOutcome]]:
    runs = await scheduler.get_runs(job_id)
    return sorted((r.scheduled_time, r.outcome) for r in runs if r.outcome is not None)


# ------------------------------------------------------------------ running jobs


async def test_interval_job_runs_on_each_fire_time(
    scheduler: AsyncScheduler, clock: FakeClock
) -> None:
    job = await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1, 2], id="t")
    assert job.next_run_time == at(5)  # one interval after it was added
    await wait_idle(scheduler)
    assert await scheduler.get_runs("t") == []
    for _ in range(3):
        clock.advance(5)
        await wait_idle(scheduler)
    runs = await scheduler.get_runs("t")
    assert [r.scheduled_time for r in runs] == [at(15), at(10), at(5)]
    assert {r.outcome for r in runs} == {RunOutcome.SUCCESS}
    assert {r.result for r in runs} == {3}
    assert (await scheduler.get_job("t")).next_run_time == at(20)


async def test_sync_callable_runs_in_a_thread(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    job = await scheduler.add_job(jobfuncs.sync_add, "date", run_date=at(1), args=[2], id="s")
    assert job.executor == "thread"
    clock.advance(1)
    await wait_idle(scheduler)
    (run,) = await scheduler.get_runs("s")
    assert run.outcome is RunOutcome.SUCCESS
    assert run.result == 2
    # A date trigger is exhausted after its one fire time: the job is gone.
    with pytest.raises(JobLookupError):
        await scheduler.get_job("s")


async def test_no_trigger_runs_once_now(scheduler: AsyncScheduler) -> None:
    async with scheduler.subscribe(JobExecuted) as events:
        job = await scheduler.add_job(jobfuncs.async_add, args=[40, 2])
        with anyio.fail_after(5):
            event = await events.__anext__()
    assert event.job_id == job.id
    assert event.result == 42
    assert event.retval == 42
    assert event.scheduled_time == T0


async def test_cron_job(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    clock.advance(1)
    job = await scheduler.add_job(jobfuncs.async_add, "cron", minute="*/15", args=[1], id="c")
    assert job.next_run_time == at(15 * 60)
    assert isinstance(job.trigger, CronTrigger)
    clock.advance(timedelta(minutes=15))
    await wait_idle(scheduler)
    assert await outcomes(scheduler, "c") == [(at(900), RunOutcome.SUCCESS)]


async def test_first_fire_time_may_be_now(scheduler: AsyncScheduler) -> None:
    # A fire time equal to the moment the job is added is not skipped.
    job = await scheduler.add_job(jobfuncs.async_add, "cron", minute="*/15", args=[1], id="c")
    assert job.next_run_time == at(0)
    await wait_idle(scheduler)
    assert await outcomes(scheduler, "c") == [(at(0), RunOutcome.SUCCESS)]


async def test_error_outcome_and_event(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    errors: list[Event] = []
    scheduler.add_listener(errors.append, EVENT_JOB_ERROR)
    await scheduler.add_job(jobfuncs.async_fail, "interval", seconds=1, args=["bad"], id="f")
    await scheduler.add_job(jobfuncs.sync_fail, "interval", seconds=1, args=["worse"], id="g")
    clock.advance(1)
    await wait_idle(scheduler)
    (run,) = await scheduler.get_runs("f")
    assert run.outcome is RunOutcome.ERROR
    assert "RuntimeError: bad" in (run.error or "")
    (run,) = await scheduler.get_runs("g")
    assert "ValueError: worse" in (run.error or "")
    assert sorted(e.job_id for e in errors if isinstance(e, JobError)) == ["f", "g"]
    assert all(isinstance(e, JobError) and e.exception is not None for e in errors)
    # The scheduler goes on after a failing job.
    clock.advance(1)
    await wait_idle(scheduler)
    assert len(await scheduler.get_runs("f")) == 2


async def test_current_run_inside_jobs(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    await scheduler.add_job(jobfuncs.whoami, "date", run_date=at(1), id="a")
    await scheduler.add_job(jobfuncs.sync_whoami, "date", run_date=at(1), id="b")
    clock.advance(1)
    await wait_idle(scheduler)
    assert (await scheduler.get_runs("a"))[0].result == "a"
    assert (await scheduler.get_runs("b"))[0].result == "b"
    with pytest.raises(HoraeError, match="outside a running job"):
        current_run()


async def test_run_job_returns_value_and_raises(scheduler: AsyncScheduler) -> None:
    assert await scheduler.run_job(jobfuncs.async_add, args=[1, 2]) == 3
    assert await scheduler.run_job(jobfuncs.sync_add, args=[3], kwargs={"b": 4}) == 7
    with pytest.raises(RuntimeError, match="nope"):
        await scheduler.run_job(jobfuncs.async_fail, args=["nope"])


async def test_callable_by_reference(scheduler: AsyncScheduler) -> None:
    job = await scheduler.add_job("tests.jobfuncs:async_add", "interval", minutes=1, args=[1])
    assert job.func is jobfuncs.async_add
    assert job.func_ref == "tests.jobfuncs:async_add"
    with pytest.raises(InvalidCallableError, match="no_such_function"):
        await scheduler.add_job("tests.jobfuncs:no_such_function")
    with pytest.raises(InvalidCallableError, match="cannot import"):
        await scheduler.add_job("tests.no_such_module:f")


# ------------------------------------------------------- misfires, coalescing


async def test_coalesce_collapses_a_backlog(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="c")
    async with scheduler.subscribe(JobSubmitted) as submitted:
        await scheduler.pause()
        clock.advance(55)  # fire times 10..50 pass while paused
        await wait_idle(scheduler)
        await scheduler.resume()
        await wait_idle(scheduler)
        event = submitted.receive_nowait()
    assert await outcomes(scheduler, "c") == [(at(50), RunOutcome.SUCCESS)]
    (run,) = await scheduler.get_runs("c")
    assert run.coalesced == 4
    assert event.coalesced == 4
    assert (await scheduler.get_job("c")).next_run_time == at(60)


async def test_no_coalesce_runs_each_fire_time(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    await scheduler.add_job(
        jobfuncs.async_add,
        "interval",
        seconds=10,
        args=[1],
        id="n",
        coalesce=False,
        max_instances=10,
    )
    await scheduler.pause()
    clock.advance(35)
    await scheduler.resume()
    await wait_idle(scheduler)
    assert await outcomes(scheduler, "n") == [
        (at(10), RunOutcome.SUCCESS),
        (at(20), RunOutcome.SUCCESS),
        (at(30), RunOutcome.SUCCESS),
    ]


async def test_misfire_grace_time(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    missed: list[Event] = []
    scheduler.add_listener(missed.append, EVENT_JOB_MISSED)
    await scheduler.add_job(
        jobfuncs.async_add,
        "interval",
        seconds=10,
        args=[1],
        id="m",
        coalesce=False,
        misfire_grace_time=16,
        max_instances=10,
    )
    await scheduler.pause()
    clock.advance(35)  # fire times 10, 20, 30; at 35, only 10 is more than 16 s late
    await scheduler.resume()
    await wait_idle(scheduler)
    assert await outcomes(scheduler, "m") == [
        (at(10), RunOutcome.MISSED),
        (at(20), RunOutcome.SUCCESS),
        (at(30), RunOutcome.SUCCESS),
    ]
    assert [e.scheduled_time for e in missed if isinstance(e, JobMissed)] == [at(10)]


async def test_coalesced_run_missed_when_latest_is_late(
    scheduler: AsyncScheduler, clock: FakeClock
) -> None:
    await scheduler.add_job(
        jobfuncs.async_add, "interval", seconds=10, args=[1], id="m", misfire_grace_time=1
    )
    await scheduler.pause()
    clock.advance(25)
    await scheduler.resume()
    await wait_idle(scheduler)
    (run,) = await scheduler.get_runs("m")
    assert run.outcome is RunOutcome.MISSED
    assert run.scheduled_time == at(20)
    assert run.coalesced == 1


async def test_past_date_runs_late_not_dropped(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    await scheduler.add_job(jobfuncs.async_add, "date", run_date=at(-60), args=[1], id="late")
    await wait_idle(scheduler)
    assert await outcomes(scheduler, "late") == [(at(-60), RunOutcome.SUCCESS)]


async def test_max_instances_skips(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    gate = anyio.Event()
    started = anyio.Event()

    async def slow() -> None:
        started.set()
        await gate.wait()

    async with scheduler.subscribe(JobSkipped) as skipped:
        await scheduler.add_job(slow, "interval", seconds=5, id="slow", max_instances=1)
        clock.advance(5)
        with anyio.fail_after(5):
            await started.wait()
        clock.advance(5)  # the second fire time finds the first run still going
        with anyio.fail_after(5):
            event = await skipped.__anext__()
    assert event.scheduled_time == at(10)
    gate.set()
    await wait_idle(scheduler)
    assert await outcomes(scheduler, "slow") == [
        (at(5), RunOutcome.SUCCESS),
        (at(10), RunOutcome.SKIPPED),
    ]


async def test_max_instances_two_allows_overlap(
    scheduler: AsyncScheduler, clock: FakeClock
) -> None:
    gate = anyio.Event()
    running = 0
    peak = 0

    async def slow() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await gate.wait()
        running -= 1

    await scheduler.add_job(slow, "interval", seconds=5, id="slow", max_instances=2)
    async with scheduler.subscribe(JobSkipped) as skipped:
        for _ in range(3):
            clock.advance(5)
            await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):
            event = await skipped.__anext__()
    assert event.scheduled_time == at(15)
    assert peak == 2
    gate.set()
    await wait_idle(scheduler)


async def test_jitter_delays_within_bounds(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    await scheduler.add_job(
        jobfuncs.async_add,
        "interval",
        seconds=60,
        args=[1],
        id="j",
        jitter=10,
        coalesce=False,
        max_instances=50,
    )
    for _ in range(20 * 60 + 10):  # one second at a time, through the last jitter window
        clock.advance(1)
        await wait_idle(scheduler)
    runs = await scheduler.get_runs("j")
    delays = [(r.started_at - r.scheduled_time).total_seconds() for r in runs if r.started_at]
    assert len(delays) == 20
    assert all(0 <= d <= 10 for d in delays), delays
    assert len(set(delays)) > 1  # it is random


async def test_wait_idle_waits_for_a_run_whose_jitter_has_passed(
    scheduler: AsyncScheduler, clock: FakeClock
) -> None:
    def takes_a_while() -> None:  # in a thread: a run still going when wait_idle looks
        time.sleep(0.05)

    await scheduler.add_job(takes_a_while, "interval", seconds=5, id="j", jitter=1)
    clock.advance(5)
    await wait_idle(scheduler)  # the run waits out its jitter
    clock.advance(1)  # past any jitter: the run is due, though its task has not woken yet
    with anyio.fail_after(5):
        await wait_idle(scheduler)
    assert await outcomes(scheduler, "j") == [(at(5), RunOutcome.SUCCESS)]


async def test_run_cancelled_in_its_jitter_is_abandoned(clock: FakeClock) -> None:
    scheduler = AsyncScheduler(clock=clock)
    async with scheduler:
        await scheduler.add_job(
            jobfuncs.async_add, "interval", seconds=5, args=[1], id="j", jitter=1
        )
        clock.advance(5)
        await wait_idle(scheduler)  # the run waits out its jitter
        await scheduler.shutdown(wait=False)
    (run,) = await scheduler.store.get_runs("j")
    assert run.outcome is RunOutcome.ABANDONED


# --------------------------------------------------------------- job verbs


async def test_get_jobs_and_print_jobs(scheduler: AsyncScheduler) -> None:
    await scheduler.add_job(jobfuncs.async_add, "interval", minutes=5, args=[1], id="b")
    await scheduler.add_job(jobfuncs.sync_add, "cron", hour=9, args=[1], id="a", name="daily")
    await scheduler.add_job(jobfuncs.sync_add, "cron", hour=9, args=[1], id="p", next_run_time=None)
    jobs = await scheduler.get_jobs()
    assert [j.id for j in jobs] == ["b", "a", "p"]  # by next run time, paused last
    out = io.StringIO()
    await scheduler.print_jobs(out)
    text = out.getvalue()
    assert "daily" in text
    assert "paused" in text
    assert "2027-01-01 00:05:00" in text


async def test_modify_job(scheduler: AsyncScheduler) -> None:
    await scheduler.add_job(jobfuncs.async_add, "interval", minutes=5, args=[1], id="m")
    async with scheduler.subscribe(JobModified) as events:
        job = await scheduler.modify_job("m", name="renamed", args=[2, 3], max_instances=3)
        assert events.receive_nowait().job_id == "m"
    assert job.name == "renamed"
    assert job.args == (2, 3)
    assert job.max_instances == 3
    assert job.next_run_time == at(300)  # schedule untouched
    stored = await scheduler.get_job("m")
    assert stored.name == "renamed"
    with pytest.raises(JobArgumentError, match="max_instances"):
        await scheduler.modify_job("m", max_instances=0)
    with pytest.raises(JobArgumentError, match="'colour' cannot be changed"):
        await scheduler.modify_job("m", colour="red")
    with pytest.raises(JobLookupError):
        await scheduler.modify_job("nope", name="x")


async def test_reschedule_job(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    await scheduler.add_job(jobfuncs.async_add, "interval", minutes=5, args=[1], id="r")
    job = await scheduler.reschedule_job("r", "cron", hour=6)
    assert job.next_run_time == at(6 * 3600)
    assert isinstance(job.trigger, CronTrigger)
    job = await scheduler.reschedule_job("r", IntervalTrigger(seconds=30, start_date=at(0)))
    assert job.next_run_time == at(0)
    clock.advance(30)
    await wait_idle(scheduler)
    assert [r.scheduled_time for r in await scheduler.get_runs("r")] == [at(30)]


async def test_pause_and_resume_job(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="p")
    job = await scheduler.pause_job("p")
    assert job.paused
    clock.advance(30)
    await wait_idle(scheduler)
    assert await scheduler.get_runs("p") == []
    clock.advance(5)
    job = await scheduler.resume_job("p")
    assert job.next_run_time == at(40)  # from now on, no backlog from the pause
    clock.advance(5)
    await wait_idle(scheduler)
    assert await outcomes(scheduler, "p") == [(at(40), RunOutcome.SUCCESS)]


async def test_job_bound_verbs(scheduler: AsyncScheduler) -> None:
    job = await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="v")
    assert (await job.pause()).paused
    assert not (await job.resume()).paused
    assert (await job.modify(name="x")).name == "x"
    assert (await job.reschedule("interval", seconds=20)).next_run_time == at(20)
    assert await job.get_runs() == []
    await job.remove()
    with pytest.raises(JobLookupError):
        await scheduler.get_job("v")


async def test_remove_job_and_all(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    async with scheduler.subscribe(JobRemoved) as removed:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="a")
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="b")
        await scheduler.remove_job("a")
        assert removed.receive_nowait().job_id == "a"
    assert [j.id for j in await scheduler.get_jobs()] == ["b"]
    await scheduler.remove_all_jobs()
    assert await scheduler.get_jobs() == []
    clock.advance(10)
    await wait_idle(scheduler)
    assert await scheduler.get_runs("b") == []


async def test_replace_existing(scheduler: AsyncScheduler) -> None:
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="x")
    job = await scheduler.add_job(
        jobfuncs.sync_add, "interval", seconds=20, args=[2], id="x", replace_existing=True
    )
    assert (await scheduler.get_job("x")).func is jobfuncs.sync_add
    assert job.next_run_time == at(20)


async def test_scheduled_job_decorator(clock: FakeClock) -> None:
    scheduler = AsyncScheduler(clock=clock, timezone="UTC")

    @scheduler.scheduled_job("interval", seconds=10, id="deco", args=[5])
    async def decorated(n: int) -> int:
        return n

    assert await decorated(1) == 1  # the function itself is unchanged
    async with scheduler:
        assert (await scheduler.get_job("deco")).next_run_time == at(10)
        clock.advance(10)
        await wait_idle(scheduler)
        assert (await scheduler.get_runs("deco"))[0].result == 5
        with pytest.raises(SchedulerRunningError, match="add_job"):
            scheduler.scheduled_job("interval", seconds=1)


async def test_jobs_added_before_start_wait_for_it(clock: FakeClock) -> None:
    scheduler = AsyncScheduler(clock=clock, timezone="UTC")
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="early")
    assert [j.id for j in await scheduler.get_jobs()] == ["early"]
    async with scheduler:
        clock.advance(10)
        await wait_idle(scheduler)
        assert len(await scheduler.get_runs("early")) == 1


# ------------------------------------------------------------ the scheduler


async def test_scheduler_pause_and_resume(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="p")
    await scheduler.pause()
    assert scheduler.paused
    clock.advance(10)
    await wait_idle(scheduler)
    assert await scheduler.get_runs("p") == []
    await scheduler.resume()
    await wait_idle(scheduler)
    assert await outcomes(scheduler, "p") == [(at(10), RunOutcome.SUCCESS)]


async def test_lifecycle_events_and_start_twice(clock: FakeClock) -> None:
    seen: list[Event] = []
    scheduler = AsyncScheduler(clock=clock)
    scheduler.add_listener(seen.append)
    async with scheduler:
        with pytest.raises(SchedulerRunningError, match="running already"):
            await scheduler.__aenter__()
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=1, args=[1], id="x")
    kinds = [type(e) for e in seen]
    assert kinds[:2] == [SchedulerStarted, JobAdded]
    assert kinds[-1] is SchedulerStopped
    with pytest.raises(SchedulerNotRunningError, match="shut down"):
        await scheduler.add_job(jobfuncs.async_add, args=[1])
    with pytest.raises(SchedulerNotRunningError):
        await scheduler.shutdown()


async def test_restart_keeps_jobs(clock: FakeClock) -> None:
    scheduler = AsyncScheduler(clock=clock, timezone="UTC")
    async with scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="k")
    async with scheduler:
        assert (await scheduler.get_job("k")).next_run_time == at(10)


async def test_shutdown_waits_for_running_jobs(clock: FakeClock) -> None:
    finished = []

    async def work() -> None:
        await anyio.sleep(0.05)
        finished.append(True)

    async with AsyncScheduler(clock=clock) as scheduler:
        started = anyio.Event()
        scheduler.add_listener(lambda e: started.set(), JobSubmitted.code)
        job = await scheduler.add_job(work)
        with anyio.fail_after(5):
            await started.wait()
    assert finished == [True]
    (run,) = await scheduler.store.get_runs(job.id)
    assert run.outcome is RunOutcome.SUCCESS


async def test_shutdown_without_waiting_cancels_runs(clock: FakeClock) -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    scheduler = AsyncScheduler(clock=clock)
    with anyio.fail_after(5):
        async with scheduler:
            job = await scheduler.add_job(forever, id="forever")
            await anyio.wait_all_tasks_blocked()
            await scheduler.shutdown(wait=False)
    (run,) = await scheduler.store.get_runs(job.id)
    assert run.outcome is RunOutcome.ABANDONED
    assert "without waiting" in (run.error or "")


async def test_jobs_acquired_while_shutting_down_still_run(clock: FakeClock) -> None:
    class SlowAcquire(MemoryStore):
        gate: anyio.Event | None = None

        async def acquire_jobs(
            self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
        ) -> list[Lease]:
            if self.gate is not None:
                await self.gate.wait()
            return await super().acquire_jobs(scheduler_id, now, limit, lease_duration)

    store = SlowAcquire()
    scheduler = AsyncScheduler(store, clock=clock)
    with anyio.fail_after(5):
        async with scheduler:
            await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1], id="j")
            await wait_idle(scheduler)
            store.gate = anyio.Event()
            clock.advance(5)
            await anyio.wait_all_tasks_blocked()  # the loop waits inside acquire_jobs
            async with anyio.create_task_group() as tg:
                tg.start_soon(scheduler.shutdown)
                await anyio.wait_all_tasks_blocked()
                store.gate.set()  # the job comes back due while the scheduler stops
    (run,) = await store.get_runs("j")
    assert run.outcome is RunOutcome.SUCCESS


async def test_run_until_stopped_returns_after_shutdown(clock: FakeClock) -> None:
    scheduler = AsyncScheduler(clock=clock)

    async def stop_it() -> None:
        await scheduler.shutdown()

    with anyio.fail_after(5):
        async with scheduler:
            await scheduler.add_job(stop_it)
            await scheduler.run_until_stopped()
    assert not scheduler.running


async def test_timeout(clock: FakeClock) -> None:
    async def hang() -> None:
        await anyio.sleep_forever()

    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(hang, id="h", timeout=0.01)
        with anyio.fail_after(5):
            await wait_idle(scheduler)
        (run,) = await scheduler.get_runs("h")
    assert run.outcome is RunOutcome.TIMEOUT


async def test_named_executors(clock: FakeClock) -> None:
    io_pool = ThreadExecutor(max_workers=2)
    async with AsyncScheduler(clock=clock, executors={"io": io_pool}) as scheduler:
        job = await scheduler.add_job(jobfuncs.sync_add, args=[1], executor="io", id="io")
        assert job.executor == "io"
        await wait_idle(scheduler)
        assert (await scheduler.get_runs("io"))[0].result == 1
        with pytest.raises(
            ExecutorLookupError, match=r"'nope'.*'async', 'io', 'process', 'thread'"
        ):
            await scheduler.add_job(jobfuncs.sync_add, args=[1], executor="nope")
        with pytest.raises(InvalidCallableError, match="block the event loop"):
            await scheduler.add_job(jobfuncs.sync_add, args=[1], executor="async")


async def test_default_executor_override(clock: FakeClock) -> None:
    pool = ThreadExecutor(max_workers=1)
    async with AsyncScheduler(clock=clock, executors={"default": pool}) as scheduler:
        sync_job = await scheduler.add_job(jobfuncs.sync_add, args=[1])
        async_job = await scheduler.add_job(jobfuncs.async_add, args=[1])
    assert sync_job.executor == "default"
    assert async_job.executor == "async"


async def test_job_defaults(clock: FakeClock) -> None:
    defaults: dict[str, Any] = {"coalesce": False, "max_instances": 3, "misfire_grace_time": 30}
    async with AsyncScheduler(clock=clock, job_defaults=defaults) as scheduler:
        job = await scheduler.add_job(jobfuncs.async_add, "interval", seconds=1, args=[1])
    assert (job.coalesce, job.max_instances) == (False, 3)
    assert job.misfire_grace_time == timedelta(seconds=30)
    with pytest.raises(JobArgumentError, match="'colour'"):
        AsyncScheduler(job_defaults={"colour": 1})


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda s: s.add_job(jobfuncs.async_add, "weekly"),
            TriggerError,
            "unknown trigger 'weekly'",
        ),
        (
            lambda s: s.add_job(jobfuncs.async_add, "interval", secs=5),
            TriggerError,
            "secs",
        ),
        (
            lambda s: s.add_job(jobfuncs.async_add, "cron", minutes="5"),
            TriggerError,
            "did you mean 'minute'",
        ),
        (lambda s: s.add_job(42), InvalidCallableError, "42 is not callable"),
        (
            lambda s: s.add_job(jobfuncs.async_add, args=[1], max_instances=0),
            JobArgumentError,
            "max_instances: 0",
        ),
        (
            lambda s: s.add_job(jobfuncs.async_add, args=[1], max_instances=-1),
            JobArgumentError,
            "max_instances: -1",
        ),
        (
            lambda s: s.add_job(jobfuncs.async_add, args=[1], misfire_grace_time=-1),
            JobArgumentError,
            "misfire_grace_time: -1 seconds is negative",
        ),
        (
            lambda s: s.add_job(jobfuncs.async_add, executor="gpu"),
            ExecutorLookupError,
            "no executor named 'gpu'",
        ),
        (lambda s: s.get_job("ghost"), JobLookupError, "no job with id 'ghost'"),
        (lambda s: s.remove_job("ghost"), JobLookupError, "no job with id 'ghost'"),
        (lambda s: s.pause_job("ghost"), JobLookupError, "ghost"),
        (
            lambda s: s.add_job(jobfuncs.async_add, hour=3),
            TriggerError,
            "no trigger",
        ),
        (
            lambda s: s.add_job(jobfuncs.async_add, "date", run_date="tomorrow"),
            TriggerError,
            "run_date",
        ),
        (lambda s: s.add_job(jobfuncs.async_add, args=[1], id=""), JobArgumentError, "job id"),
        (lambda s: s.add_job(jobfuncs.async_add, args="ab"), JobArgumentError, "args"),
        (
            lambda s: s.add_job(jobfuncs.async_add, args=[1, 2, 3]),
            JobArgumentError,
            r"async_add\(a: 'int', b: 'int' = 0\).*args=\[1, 2, 3\].*too many",
        ),
        (
            lambda s: s.add_job(jobfuncs.sync_add, kwargs={"c": 1}, args=[1]),
            JobArgumentError,
            "unexpected keyword argument 'c'",
        ),
        (lambda s: s.add_job(jobfuncs.sync_add), JobArgumentError, "missing a required argument"),
    ],
)
async def test_bad_input(scheduler: AsyncScheduler, call: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match) as info:
        await call(scheduler)
    assert isinstance(info.value, HoraeError)


async def test_duplicate_id(scheduler: AsyncScheduler) -> None:
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=1, args=[1], id="dup")
    with pytest.raises(ConflictingIdError, match="replace_existing=True"):
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=1, args=[1], id="dup")


async def test_trigger_that_never_fires_is_refused(scheduler: AsyncScheduler) -> None:
    with pytest.raises(TriggerError, match="never run"):
        await scheduler.add_job(
            jobfuncs.async_add, "cron", args=[1], hour=1, end_date="2026-01-01T00:00:00+00:00"
        )


async def test_bad_scheduler_arguments() -> None:
    with pytest.raises(JobArgumentError, match="role"):
        AsyncScheduler(role="worker")  # type: ignore[arg-type]
    with pytest.raises(TriggerError, match="timezone"):
        AsyncScheduler(timezone="Mars/Olympus")
    with pytest.raises(JobArgumentError, match="executors\\['x'\\]"):
        AsyncScheduler(executors={"x": object()})  # type: ignore[dict-item]


async def test_naive_datetimes_use_scheduler_timezone(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, timezone="Europe/Paris") as scheduler:
        job = await scheduler.add_job(
            jobfuncs.async_add, "date", run_date="2027-01-01 09:00:00", args=[1]
        )
        cron = await scheduler.add_job(jobfuncs.async_add, "cron", hour=9, args=[1])
    assert job.next_run_time == datetime(2027, 1, 1, 8, tzinfo=UTC)
    assert cron.next_run_time == datetime(2027, 1, 1, 8, tzinfo=UTC)


async def test_client_role_manages_but_runs_nothing(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, role="client") as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=1, args=[1], id="c")
        clock.advance(5)
        await wait_idle(scheduler)
        assert await scheduler.get_runs("c") == []
        assert (await scheduler.get_job("c")).next_run_time == at(1)


async def test_listener_that_raises_does_not_stop_anything(
    scheduler: AsyncScheduler, clock: FakeClock
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("listener bug")

    got: list[Event] = []

    async def async_listener(event: Event) -> None:
        got.append(event)

    scheduler.add_listener(broken)
    scheduler.add_listener(async_listener, EVENT_JOB_EXECUTED)
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=1, args=[1], id="l")
    clock.advance(1)
    await wait_idle(scheduler)
    assert [e.job_id for e in got if isinstance(e, JobExecuted)] == ["l"]
    scheduler.remove_listener(broken)
    with pytest.raises(ValueError, match="not a listener"):
        scheduler.remove_listener(broken)


class BrokenTrigger:
    """A trigger whose next() raises once its first fire time has come."""

    def next(self, after: datetime) -> datetime | None:
        if after >= T0:
            raise ArithmeticError("the trigger is broken")
        return T0

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "broken"}

    def describe(self) -> str:
        return "broken"


async def test_trigger_that_raises_becomes_an_error_event(
    scheduler: AsyncScheduler, clock: FakeClock
) -> None:
    errors: list[Event] = []
    scheduler.add_listener(errors.append, EVENT_JOB_ERROR)
    await scheduler.add_job(
        jobfuncs.async_add, BrokenTrigger(), args=[1], id="broken", next_run_time=at(1)
    )
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=1, args=[1], id="fine")
    clock.advance(1)
    await wait_idle(scheduler)
    (error,) = errors
    assert isinstance(error, JobError)
    assert error.job_id == "broken"
    assert "the trigger is broken" in error.traceback
    # The broken job stays in the store (backed off), and the others keep running.
    assert (await scheduler.get_job("broken")).next_run_time == at(61)
    clock.advance(1)
    await wait_idle(scheduler)
    assert len(await scheduler.get_runs("fine")) == 2


async def test_a_run_that_suspends_holds_up_no_other_run(
    scheduler: AsyncScheduler, clock: FakeClock
) -> None:
    # Runs of one batch start in one task; one that waits must not delay the others.
    gate = anyio.Event()
    finished: list[str] = []

    async def waits() -> None:
        await gate.wait()
        finished.append("waits")

    async def quick(name: str) -> None:
        finished.append(name)

    await scheduler.add_job(quick, "date", run_date=at(1), args=["first"], id="first")
    await scheduler.add_job(waits, "date", run_date=at(1), id="waits")
    await scheduler.add_job(quick, "date", run_date=at(1), args=["second"], id="second")
    await scheduler.add_job(jobfuncs.sync_add, "date", run_date=at(1), args=[1], id="thread")
    await scheduler.add_job(quick, "date", run_date=at(1), args=["third"], id="third")
    thread_done = anyio.Event()
    scheduler.add_listener(
        lambda e: thread_done.set() if e.job_id == "thread" else None,  # type: ignore[attr-defined]
        EVENT_JOB_EXECUTED,
    )
    clock.advance(1)
    try:
        with anyio.fail_after(5):
            await thread_done.wait()
        await anyio.wait_all_tasks_blocked()
        assert finished == ["first", "second", "third"]
        assert (await scheduler.get_runs("thread"))[0].outcome is RunOutcome.SUCCESS
    finally:
        gate.set()
    await wait_idle(scheduler)
    assert finished[-1] == "waits"


async def test_shutdown_without_waiting_abandons_queued_runs(clock: FakeClock) -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    scheduler = AsyncScheduler(clock=clock, timezone="UTC")
    with anyio.fail_after(5):
        async with scheduler:
            for i in range(5):
                await scheduler.add_job(forever, "date", run_date=at(1), id=f"f{i}")
            clock.advance(1)
            await anyio.wait_all_tasks_blocked()
            await scheduler.shutdown(wait=False)
    outcomes_ = [(await scheduler.store.get_runs(f"f{i}"))[0].outcome for i in range(5)]
    assert outcomes_ == [RunOutcome.ABANDONED] * 5


async def test_shutdown_without_waiting_publishes_abandoned(clock: FakeClock) -> None:
    async def forever() -> None:
        await anyio.sleep_forever()

    abandoned: list[Event] = []
    scheduler = AsyncScheduler(clock=clock, timezone="UTC")
    scheduler.add_listener(abandoned.append, EVENT_JOB_ABANDONED)
    with anyio.fail_after(5):
        async with scheduler:
            await scheduler.add_job(forever, id="forever")
            await anyio.wait_all_tasks_blocked()
            await scheduler.shutdown(wait=False)
    (event,) = abandoned
    assert isinstance(event, JobAbandoned)
    assert event.job_id == "forever"
    assert "without waiting" in event.reason


async def test_a_listener_may_remove_itself(scheduler: AsyncScheduler) -> None:
    calls: list[str] = []

    def once(event: Event) -> None:
        calls.append("once")
        scheduler.remove_listener(once)

    scheduler.add_listener(once)
    scheduler.add_listener(lambda e: calls.append("always"))
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1])
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1])
    assert calls == ["once", "always", "always"]


async def test_add_jobs_in_one_call(scheduler: AsyncScheduler, clock: FakeClock) -> None:
    added: list[Event] = []
    scheduler.add_listener(added.append, EVENT_JOB_ADDED)
    jobs = await scheduler.add_jobs(
        [
            {
                "func": jobfuncs.async_add,
                "trigger": "interval",
                "seconds": 10,
                "args": [i],
                "id": f"j{i}",
            }
            for i in range(5)
        ]
        + [
            {
                "func": "tests.jobfuncs:sync_add",
                "trigger": "cron",
                "minute": 1,
                "args": [1],
                "id": "c",
            }
        ]
    )
    assert [j.id for j in jobs] == ["j0", "j1", "j2", "j3", "j4", "c"]
    assert len(added) == 6
    clock.advance(10)
    await wait_idle(scheduler)
    assert [(await scheduler.get_runs(f"j{i}"))[0].result for i in range(5)] == [0, 1, 2, 3, 4]


async def test_add_jobs_refuses_the_whole_batch(scheduler: AsyncScheduler) -> None:
    specs = [
        {"func": jobfuncs.async_add, "trigger": "interval", "seconds": 10, "args": [1], "id": "ok"},
        {"func": jobfuncs.async_add, "trigger": "cron", "hour": 25, "args": [1], "id": "bad"},
    ]
    with pytest.raises(TriggerError, match="hour") as info:
        await scheduler.add_jobs(specs)
    if sys.version_info >= (3, 11):  # exception notes are new in 3.11
        assert "spec 1" in "".join(info.value.__notes__)
    assert await scheduler.get_jobs() == []
    with pytest.raises(JobArgumentError, match="spec 0 has no 'func'"):
        await scheduler.add_jobs([{"trigger": "interval", "seconds": 1}])
    await scheduler.add_jobs(specs[:1])
    with pytest.raises(ConflictingIdError):
        await scheduler.add_jobs(specs[:1])
    await scheduler.add_jobs(specs[:1], replace_existing=True)


class FlakyFinishStore(MemoryStore):
    """A memory store whose finish_run fails a given number of times."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def finish_run(self, run: Run) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the store went away")
        await super().finish_run(run)


async def test_a_failed_outcome_write_is_retried_not_lost(clock: FakeClock) -> None:
    # An outcome that is never stored would leave the run in flight for good, and with
    # max_instances=1 every later fire time would be skipped.
    store = FlakyFinishStore(failures=2)
    async with AsyncScheduler(store, clock=clock, timezone="UTC") as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="j")
        for _ in range(5):
            clock.advance(10)
            await wait_idle(scheduler)
        clock.advance(60)  # past the retry backoff
        await wait_idle(scheduler)
        runs = {r.scheduled_time: r.outcome for r in await scheduler.get_runs("j")}
    assert store.failures == 0
    assert None not in runs.values()  # nothing left in flight
    assert runs[at(10)] is RunOutcome.SUCCESS  # its outcome was stored after all
    assert (runs[at(40)], runs[at(50)]) == (RunOutcome.SUCCESS, RunOutcome.SUCCESS)


async def test_cron_across_the_fall_back_night_fires_each_wall_time_once() -> None:
    # London, 2026-10-25: 01:00-02:00 happens twice (BST, then GMT). An hourly job runs
    # at 00:00 BST, 01:00 BST and 02:00 GMT: once per wall time, never twice for 01:00.
    clock = FakeClock("2026-10-24T22:30:00+00:00")
    async with AsyncScheduler(clock=clock, timezone="Europe/London") as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "cron", minute=0, args=[1], id="hourly")
        for _ in range(8):
            clock.advance(timedelta(minutes=30))
            await wait_idle(scheduler)
        runs = await scheduler.get_runs("hourly")
    fired = sorted(r.scheduled_time.astimezone(UTC) for r in runs)
    assert fired == [
        datetime(2026, 10, 24, 23, tzinfo=UTC),  # 00:00 BST
        datetime(2026, 10, 25, 0, tzinfo=UTC),  # 01:00 BST
        datetime(2026, 10, 25, 2, tzinfo=UTC),  # 02:00 GMT
    ]
    assert {r.outcome for r in runs} == {RunOutcome.SUCCESS}


async def test_cron_across_the_spring_gap_fires_shifted() -> None:
    # New York, 2026-03-08: 02:00-03:00 does not exist. A job at 02:30 fires at 03:30 EDT.
    clock = FakeClock("2026-03-08T05:00:00+00:00")  # 00:00 EST
    async with AsyncScheduler(clock=clock, timezone="America/New_York") as scheduler:
        job = await scheduler.add_job(
            jobfuncs.async_add, "cron", hour=2, minute=30, args=[1], id="j"
        )
        assert job.next_run_time == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)  # 03:30 EDT
        clock.advance(timedelta(hours=3))
        await wait_idle(scheduler)
        (run,) = await scheduler.get_runs("j")
        assert run.outcome is RunOutcome.SUCCESS
        assert (await scheduler.get_job("j")).next_run_time == datetime(
            2026, 3, 9, 6, 30, tzinfo=UTC
        )  # 02:30 EDT the next day
