"""The blocking facade: the same verbs, forwarded to AsyncScheduler through a portal."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pytest

from horae import (
    EVENT_JOB_EXECUTED,
    Event,
    JobExecuted,
    JobLookupError,
    RunOutcome,
    Scheduler,
    SchedulerNotRunningError,
    SchedulerRunningError,
    TriggerError,
)
from horae.testing import FakeClock

from . import jobfuncs

T0 = datetime(2027, 1, 1, tzinfo=timezone.utc)


class Executed:
    """Collects JobExecuted events (delivered in the scheduler's thread)."""

    def __init__(self) -> None:
        self.events: list[JobExecuted] = []
        self.cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        assert isinstance(event, JobExecuted)
        with self.cond:
            self.events.append(event)
            self.cond.notify_all()

    def wait_for(self, count: int) -> list[JobExecuted]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.events) >= count, timeout=10)
            return list(self.events)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_background_scheduler(backend: str) -> None:
    clock = FakeClock(T0)
    executed = Executed()
    scheduler = Scheduler(clock=clock, timezone="UTC", backend=backend)  # type: ignore[arg-type]
    scheduler.add_listener(executed, EVENT_JOB_EXECUTED)
    # Jobs added before start() wait for it, as in APScheduler 3.
    scheduler.add_job(jobfuncs.sync_add, "interval", seconds=10, args=[1, 1], id="sync")
    assert [j.id for j in scheduler.get_jobs()] == ["sync"]
    scheduler.start()
    try:
        assert scheduler.running
        with pytest.raises(SchedulerRunningError):
            scheduler.start()
        scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[2, 2], id="async")
        clock.advance(10)
        events = executed.wait_for(2)
        assert sorted((e.job_id, e.result) for e in events) == [("async", 4), ("sync", 2)]
        assert scheduler.get_runs("sync")[0].outcome is RunOutcome.SUCCESS
        assert scheduler.run_job(jobfuncs.sync_add, args=[5, 6]) == 11
        job = scheduler.pause_job("sync")
        assert job.paused
        assert scheduler.resume_job("sync").next_run_time == T0 + timedelta(seconds=20)
        assert scheduler.modify_job("sync", name="renamed").name == "renamed"
        assert scheduler.reschedule_job("sync", "cron", hour=5).next_run_time == T0 + timedelta(
            hours=5
        )
        scheduler.remove_job("sync")
        with pytest.raises(JobLookupError):
            scheduler.get_job("sync")
        with pytest.raises(TriggerError, match="unknown trigger"):
            scheduler.add_job(jobfuncs.sync_add, "hourly")
        scheduler.pause()
        scheduler.resume()
        scheduler.remove_all_jobs()
        assert scheduler.get_jobs() == []
    finally:
        scheduler.shutdown()
    assert not scheduler.running
    with pytest.raises(SchedulerNotRunningError):
        scheduler.shutdown()


def test_context_manager_and_print_jobs(capsys: pytest.CaptureFixture[str]) -> None:
    with Scheduler(clock=FakeClock(T0), timezone="UTC") as scheduler:
        scheduler.add_job(jobfuncs.sync_add, "cron", hour=3, args=[1], id="nightly")
        scheduler.print_jobs()
    assert "nightly" in capsys.readouterr().out
    assert not scheduler.running


def test_run_forever_blocks_until_shutdown() -> None:
    scheduler = Scheduler(timezone="UTC")
    done = threading.Event()

    def stop() -> None:
        # A job in a worker thread shuts the blocking scheduler down.
        threading.Thread(target=scheduler.shutdown).start()
        done.set()

    scheduler.add_job(stop)
    runner = threading.Thread(target=scheduler.run_forever)
    runner.start()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert done.is_set()


def test_a_job_may_shut_the_blocking_scheduler_down() -> None:
    scheduler = Scheduler(timezone="UTC")
    returned = threading.Event()

    def stop() -> None:
        scheduler.shutdown()  # as APScheduler 3 users do, from the job's own thread
        returned.set()

    scheduler.add_job(stop, id="stop")
    runner = threading.Thread(target=scheduler.run_forever, daemon=True)
    runner.start()
    runner.join(timeout=10)
    assert not runner.is_alive()
    assert returned.is_set()
    assert not scheduler.running


def test_run_job_needs_start() -> None:
    with pytest.raises(SchedulerNotRunningError, match="start"):
        Scheduler().run_job(jobfuncs.sync_add, args=[1])
