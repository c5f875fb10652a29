"""explain_job: why a job ran, or did not, at its last fire times. Histories are built
on the fake clock, one situation a test; the command line's ``horae explain`` is in
tests/test_cli.py."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest

from horae import (
    AsyncScheduler,
    JobLookupError,
    MemoryStore,
    Retry,
    RunOutcome,
    SQLiteStore,
    current_run,
)
from horae._explain import MAX_TRIGGER_STEPS, Explanation, FireTimeExplanation, explain_job
from horae._planning import plan_release
from horae.testing import FakeClock, wait_idle

from . import jobfuncs
from .conftest import START as _START

pytestmark = pytest.mark.anyio

START = datetime.fromisoformat(_START)
UTC = ZoneInfo("UTC")


async def explain(
    scheduler: AsyncScheduler, clock: FakeClock, job_id: str, limit: int = 10
) -> Explanation:
    return await explain_job(scheduler.store, job_id, now=clock.now(), timezone=UTC, limit=limit)


def at(explanation: Explanation) -> dict[float, FireTimeExplanation]:
    """The entries by fire time, in seconds after START."""
    return {(e.scheduled_time - START).total_seconds(): e for e in explanation.fire_times}


async def advance(clock: FakeClock, seconds: float) -> None:
    """Move the clock a second at a time (long runs keep the scheduler from idling)."""
    for _ in range(round(seconds)):
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()


class Slow:
    """A job that takes ``seconds`` of the fake clock."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds

    async def __call__(self) -> None:
        await self.clock.sleep(self.seconds)


async def _stop_slow(scheduler: AsyncScheduler, clock: FakeClock, job_id: str) -> None:
    await scheduler.remove_job(job_id)
    await advance(clock, 30)


# ------------------------------------------------------------------ ran, or not


async def test_a_late_run_says_how_late_and_how_long(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, scheduler_id="s1") as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="j")
        clock.advance(17)  # the fire time of 10 is taken up at 17
        await wait_idle(scheduler)
        explanation = await explain(scheduler, clock, "j")
    assert explanation.state == "scheduled"
    assert "next fire time 2027-01-01 00:00:20 UTC (in 3 s)" in explanation.summary
    (entry,) = explanation.fire_times
    assert entry.status == "success"
    assert entry.outcome is RunOutcome.SUCCESS
    assert entry.attempts == 1
    assert entry.reason.startswith("started 7 s late, took 0 ms")
    assert "only 1 fire time of this job is on record" in explanation.notes[0]


async def test_coalesced_fire_times_point_at_the_run_that_covered_them(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="j")
        clock.advance(10)
        await wait_idle(scheduler)
        clock.advance(35)  # 20, 30 and 40 are due at 45: one run, for 40
        await wait_idle(scheduler)
        entries = at(await explain(scheduler, clock, "j"))
    assert list(entries) == [40, 30, 20, 10]
    assert "it covered 2 earlier fire times (coalesce=True)" in entries[40].reason
    for covered in (30, 20):
        assert entries[covered].status == "coalesced"
        assert entries[covered].outcome is None
        assert "covered by the success run for 2027-01-01 00:00:40 UTC" in entries[covered].reason
    assert entries[10].reason.startswith("started on time")


async def test_missed_says_the_grace_and_how_late_it_was_looked_at(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(
            jobfuncs.async_add, "interval", seconds=10, args=[1], id="j", misfire_grace_time=5
        )
        clock.advance(10)
        await wait_idle(scheduler)
        clock.advance(27)  # at 37: 20 and 30 are due; coalesced into 30, 7 s late
        await wait_idle(scheduler)
        entries = at(await explain(scheduler, clock, "j"))
    assert entries[30].status == "missed"
    assert "could not start within misfire_grace_time=5 s" in entries[30].reason
    assert "it was looked at 7 s after its fire time" in entries[30].reason
    assert "it stands for 1 earlier fire time too" in entries[30].reason
    assert entries[20].status == "coalesced"
    assert "covered by the missed run for 2027-01-01 00:00:30 UTC" in entries[20].reason


async def test_skipped_names_the_run_still_going(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, scheduler_id="s1") as scheduler:
        await scheduler.add_job(Slow(clock, 25), "interval", seconds=10, id="j")
        await advance(clock, 45)
        explanation = await explain(scheduler, clock, "j")
        await _stop_slow(scheduler, clock, "j")
    assert explanation.state == "running"
    assert "1 run in progress on scheduler s1" in explanation.summary
    assert "that fire time is recorded skipped (max_instances=1, overlap='skip')" in (
        explanation.summary
    )
    entries = at(explanation)
    assert [entries[t].status for t in (40, 30, 20, 10)] == [
        "in progress",
        "skipped",
        "skipped",
        "success",
    ]
    assert "as many runs in progress as max_instances=1 allows (overlap='skip')" in (
        entries[20].reason
    )
    assert "still going: the run for 2027-01-01 00:00:10 UTC" in entries[30].reason
    assert entries[40].reason == "running on scheduler s1"
    assert "took 25 s" in entries[10].reason


async def test_buffer_all_waits_for_a_free_slot(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, scheduler_id="s1") as scheduler:
        await scheduler.add_job(
            Slow(clock, 25), "interval", seconds=10, id="j", overlap="buffer_all"
        )
        await advance(clock, 45)
        explanation = await explain(scheduler, clock, "j")
        await _stop_slow(scheduler, clock, "j")
    assert explanation.state == "waiting for a free slot"
    assert explanation.summary.startswith(
        "waiting for a free slot since 2027-01-01 00:00:30 UTC (15 s ago): 1 run in progress "
        "on scheduler s1 (overlap='buffer_all' holds this and later fire times until it ends"
    )
    assert "If that scheduler died, another takes the run over" in explanation.summary
    entries = at(explanation)
    assert [entries[t].status for t in (40, 30, 20, 10)] == ["due", "due", "in progress", "success"]
    assert entries[30].reason == explanation.summary
    assert "behind the fire time of 2027-01-01 00:00:30 UTC" in entries[40].reason
    assert "each runs in turn" in entries[40].reason


async def test_buffer_one_waits_and_coalesces(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, scheduler_id="s1") as scheduler:
        await scheduler.add_job(
            Slow(clock, 25), "interval", seconds=10, id="j", overlap="buffer_one"
        )
        await advance(clock, 45)
        explanation = await explain(scheduler, clock, "j")
        await _stop_slow(scheduler, clock, "j")
    assert explanation.state == "waiting for a free slot"
    assert (
        "(overlap='buffer_one' holds the job until it ends; then one run, for the latest "
        "fire time that waited, covers the others (coalesce=True))"
    ) in explanation.summary
    entries = at(explanation)
    # 20 waited for the run of 10, 30 came while it waited: at 35 one run, for 30.
    assert [entries[t].status for t in (40, 30, 20, 10)] == [
        "due",
        "in progress",
        "coalesced",
        "success",
    ]
    assert "covered by the in-progress run for 2027-01-01 00:00:30 UTC" in entries[20].reason


async def test_cancel_other_says_what_cancelled_the_run(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(
            Slow(clock, 25), "interval", seconds=10, id="j", overlap="cancel_other"
        )
        await advance(clock, 25)
        explanation = await explain(scheduler, clock, "j")
        await _stop_slow(scheduler, clock, "j")
    assert "that fire time cancels it (overlap='cancel_other')" in explanation.summary
    entries = at(explanation)
    assert entries[10].status == "cancelled"
    assert entries[10].reason.startswith(
        "cancelled by its job's fire time 2027-01-01T00:00:20+00:00 (overlap='cancel_other')"
    )
    assert entries[10].reason.endswith("it had run 10 s")
    assert entries[20].status == "in progress"


# ------------------------------------------------------------------ retries


async def test_a_retry_that_succeeded(clock: FakeClock) -> None:
    async def flaky() -> None:
        if current_run().attempt == 1:
            raise ValueError("not yet")

    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(
            flaky, "interval", seconds=60, id="j", retry=Retry(attempts=3, backoff=2, jitter=0)
        )
        clock.advance(60)
        await wait_idle(scheduler)
        clock.advance(2)
        await wait_idle(scheduler)
        (entry,) = (await explain(scheduler, clock, "j")).fire_times
    assert entry.status == "success"
    assert entry.attempts == 2
    assert [run.attempt for run in entry.runs] == [1, 2]
    assert entry.reason.startswith(
        "succeeded on attempt 2 of 3 after an error; started 2 s after its fire time"
    )


async def test_a_waiting_retry_and_the_fire_time_it_skipped(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, scheduler_id="s1") as scheduler:
        await scheduler.add_job(
            jobfuncs.async_fail,
            "interval",
            seconds=10,
            id="f",
            retry=Retry(attempts=2, backoff=15, jitter=0),
        )
        clock.advance(10)
        await wait_idle(scheduler)
        clock.advance(10)
        await wait_idle(scheduler)
        entries = at(await explain(scheduler, clock, "f"))
        clock.advance(5)
        await wait_idle(scheduler)
        final = at(await explain(scheduler, clock, "f"))
    assert entries[10].status == "in progress"
    assert entries[10].reason == (
        "attempt 2 of 2 after an error, on scheduler s1: running, or waiting for its retry"
    )
    assert "still going: the run for 2027-01-01 00:00:10 UTC" in entries[20].reason
    assert final[10].status == "error"
    assert final[10].reason == (
        "failed: RuntimeError: boom (attempt 2 of 2 after an error); the last of retry.attempts=2"
    )


async def test_an_error_without_retry_policy_and_a_timeout(clock: FakeClock) -> None:
    async def hang() -> None:
        await anyio.sleep_forever()

    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(jobfuncs.async_fail, "interval", seconds=10, id="e")
        await scheduler.add_job(hang, "interval", seconds=10, id="t", timeout=0.01)
        clock.advance(10)
        with anyio.fail_after(5):
            await wait_idle(scheduler)
        (error,) = (await explain(scheduler, clock, "e")).fire_times
        (timeout,) = (await explain(scheduler, clock, "t")).fire_times
    assert error.reason == "failed: RuntimeError: boom; not retried: the job has no retry policy"
    assert timeout.status == "timeout"
    assert timeout.reason.startswith("timed out: it ran longer than timeout=10 ms")


# ------------------------------------------------------------------ pauses


async def test_paused_with_a_note_and_the_fire_times_since(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="j")
        clock.advance(10)
        await wait_idle(scheduler)
        await scheduler.pause_job("j", note="the vendor's API is down")
        clock.advance(30)
        await wait_idle(scheduler)
        explanation = await explain(scheduler, clock, "j")
    assert explanation.state == "paused"
    assert explanation.summary.startswith("paused: the vendor's API is down. Fire times that")
    entries = at(explanation)
    assert list(entries) == [40, 30, 20, 10]
    for t in (40, 30, 20):
        assert entries[t].status == "no record"
        assert entries[t].attempts == 0
        assert "no record: the job is paused" in entries[t].reason


async def test_fire_times_that_passed_while_paused_leave_no_record(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="j")
        clock.advance(10)
        await wait_idle(scheduler)
        await scheduler.pause_job("j")
        clock.advance(30)
        await scheduler.resume_job("j")  # from 50: 20, 30, 40 are not run
        clock.advance(10)
        await wait_idle(scheduler)
        explanation = await explain(scheduler, clock, "j")
    entries = at(explanation)
    assert [entries[t].status for t in (50, 40, 30, 20, 10)] == [
        "success",
        "no record",
        "no record",
        "no record",
        "success",
    ]
    assert entries[30].reason.startswith(
        "no record: the job was paused then, or rescheduled or replaced; resume_job"
    )


async def test_paused_after_failures(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(
            jobfuncs.async_fail, "interval", seconds=10, id="f", pause_after_failures=2
        )
        for _ in range(3):
            clock.advance(10)
            await wait_idle(scheduler)
        explanation = await explain(scheduler, clock, "f")
    assert explanation.state == "paused"
    assert "paused: paused after 2 failed fire times in a row (pause_after_failures=2)" in (
        explanation.summary
    )
    entries = at(explanation)
    assert [entries[t].status for t in (30, 20, 10)] == ["no record", "error", "error"]
    assert entries[20].reason.startswith("failed: RuntimeError: boom")


# ------------------------------------------------------------------ crashes


async def _crash_one_run(store: MemoryStore, clock: FakeClock) -> None:
    """A scheduler "dead" takes the due job, starts its run, and dies."""
    (lease,) = await store.acquire_jobs("dead", clock.now(), limit=1, lease_duration=30)
    await store.release_jobs("dead", [plan_release(lease, clock.now(), "dead")])


@pytest.mark.parametrize("on_crash", ["rerun", "abandon"])
async def test_an_abandoned_run_and_its_rerun(clock: FakeClock, on_crash: str) -> None:
    store = MemoryStore()
    async with AsyncScheduler(
        store, clock=clock, lease_duration=30, scheduler_id="s1"
    ) as scheduler:
        await scheduler.pause()
        await scheduler.add_job(
            jobfuncs.async_add, "interval", hours=1, args=[1], id="j", on_crash=on_crash
        )
        clock.advance(3600)
        await _crash_one_run(store, clock)
        in_flight = await explain(scheduler, clock, "j")
        await scheduler.resume()
        clock.advance(31)
        await wait_idle(scheduler)
        (entry,) = (await explain(scheduler, clock, "j")).fire_times
    assert in_flight.state == "running"
    assert "1 run in progress on scheduler dead" in in_flight.summary
    assert in_flight.fire_times[0].reason == "running on scheduler dead"
    if on_crash == "rerun":
        assert entry.status == "success"
        assert entry.attempts == 2
        assert entry.reason.startswith(
            "succeeded on attempt 2 of 3 (a rerun) after attempt 1 was abandoned by "
            "scheduler dead (it died, or lost the store for longer than its lease)"
        )
    else:
        assert entry.status == "abandoned"
        assert entry.reason.startswith("abandoned: scheduler dead stopped renewing")
        assert "taken over by s1" in entry.reason
        assert entry.reason.endswith("; not rerun (on_crash='abandon')")


async def test_a_one_off_job_kept_for_its_rerun_is_finishing(clock: FakeClock) -> None:
    store = MemoryStore()
    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:
        await scheduler.pause()
        await scheduler.add_job(jobfuncs.async_add, args=[1], id="once", on_crash="rerun")
        await _crash_one_run(store, clock)
        explanation = await explain(scheduler, clock, "once")
    assert explanation.state == "finishing"
    assert explanation.summary.startswith(
        "its trigger has no fire time left; the job is kept, without a next run time, "
        "until its last run ends (1 run in progress on scheduler dead), then removed."
    )


# ------------------------------------------------------------ removed, due


async def test_a_removed_jobs_history(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="j")
        for _ in range(2):
            clock.advance(10)
            await wait_idle(scheduler)
        await scheduler.remove_job("j")
        explanation = await explain(scheduler, clock, "j")
        with pytest.raises(JobLookupError, match="nope"):
            await explain(scheduler, clock, "nope")
    assert explanation.state == "removed"
    assert explanation.job is None
    assert explanation.summary.startswith("job 'j' no longer exists")
    assert [e.status for e in explanation.fire_times] == ["success", "success"]
    assert "trigger:" not in str(explanation)


async def test_a_job_that_cannot_be_read_back(
    clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "explain_gone.py"
    module.write_text("async def job() -> None: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    async with AsyncScheduler(SQLiteStore(tmp_path / "jobs.db"), clock=clock) as scheduler:
        await scheduler.add_job("explain_gone:job", "interval", seconds=10, id="j")
        clock.advance(10)
        await wait_idle(scheduler)
        module.unlink()
        monkeypatch.delitem(sys.modules, "explain_gone")
        importlib.invalidate_caches()
        explanation = await explain(scheduler, clock, "j")
        await scheduler.remove_job("j")
    assert explanation.state == "unreadable"
    assert explanation.job is None
    assert explanation.summary.startswith("job 'j' cannot be read back")
    assert "explain_gone" in explanation.summary
    assert "look at it again a minute later" in explanation.summary
    assert [e.status for e in explanation.fire_times] == ["success"]


async def test_due_but_no_scheduler_runs_it(clock: FakeClock) -> None:
    store = MemoryStore()
    async with AsyncScheduler(store, clock=clock, role="client") as client:
        await client.add_job(
            jobfuncs.async_add, "cron", minute="*", args=[1], id="d", misfire_grace_time=90
        )
        clock.advance(185)  # 00:00, 00:01, 00:02 and 00:03 are due
        explanation = await explain(client, clock, "d")
    assert explanation.state == "due"
    assert explanation.summary.startswith(
        "due since 2027-01-01 00:00:00 UTC (3 min ago) and not started: no scheduler has "
        "acquired it yet — none is running on this store, they are all paused, or a "
        "scheduler that died still holds its lease until it expires"
    )
    # Coalesced, the one run is for 00:03, within the grace: not missed.
    assert "4 fire times are due, which coalesce=True runs once, as the latest" in (
        explanation.summary
    )
    assert "missed" not in explanation.summary
    entries = at(explanation)
    assert [entries[t].status for t in (180, 120, 60, 0)] == ["due"] * 4
    assert entries[0].reason == explanation.summary
    assert "one run covers them all" in entries[180].reason
    assert explanation.notes == ()  # no history is not a short history


async def test_a_job_made_due_by_hand(clock: FakeClock) -> None:
    store = MemoryStore()
    async with AsyncScheduler(store, clock=clock) as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="j")
        clock.advance(10)
        await wait_idle(scheduler)
    async with AsyncScheduler(store, clock=clock, role="client") as client:
        clock.advance(3)
        await client.modify_job("j", next_run_time=clock.now())  # horae jobs run-now
        explanation = await explain(client, clock, "j")
    entries = at(explanation)
    assert [entries[t].status for t in (13, 10)] == ["due", "success"]
    assert entries[13].reason.startswith("due since 2027-01-01 00:00:13 UTC (now)")


async def test_due_beyond_the_grace_will_be_missed(clock: FakeClock) -> None:
    async with AsyncScheduler(MemoryStore(), clock=clock, role="client") as client:
        await client.add_job(
            jobfuncs.async_add, "interval", seconds=60, args=[1], id="d", misfire_grace_time=10
        )
        clock.advance(75)
        explanation = await explain(client, clock, "d")
    assert "it is later than misfire_grace_time=10 s already, so it will be recorded missed" in (
        explanation.summary
    )


# ------------------------------------------------------------------ limits, output


async def test_limit_and_the_trigger_step_cap(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=1, args=[1], id="j")
        for _ in range(3):
            clock.advance(1)
            await wait_idle(scheduler)
        assert len((await explain(scheduler, clock, "j", limit=2)).fire_times) == 2
        await scheduler.pause_job("j")
        clock.advance(MAX_TRIGGER_STEPS + 500)
        explanation = await explain(scheduler, clock, "j", limit=5)
        with pytest.raises(ValueError, match="limit: 0 is not allowed"):
            await explain(scheduler, clock, "j", limit=0)
    assert len(explanation.fire_times) == 5
    assert [e.status for e in explanation.fire_times] == ["no record"] * 5
    (note,) = explanation.notes
    assert "were not looked at (more than 1,000 since the oldest one shown)" in note


async def test_text_and_json(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, scheduler_id="s1") as scheduler:
        await scheduler.add_job(
            jobfuncs.async_add, "interval", seconds=10, args=[1], id="j", retry=2, max_runs=9
        )
        clock.advance(10)
        await wait_idle(scheduler)
        explanation = await explain_job(
            scheduler.store, "j", now=clock.now(), timezone=ZoneInfo("Europe/Paris")
        )
    text = str(explanation)
    lines = text.splitlines()
    assert lines[0] == "job 'j': scheduled"
    assert lines[1] == "  next fire time 2027-01-01 01:00:20 CET (in 10 s)"
    assert "  trigger: every 10 seconds" in text
    assert "retry.attempts=2, max_runs=9" in text
    assert "Last 1 fire time, newest first:" in text
    assert "  2027-01-01 01:00:10 CET (now)  success\n      started on time, took 0 ms" in text
    assert "Note: only 1 fire time" in text
    data: dict[str, Any] = json.loads(json.dumps(explanation.to_dict()))
    assert data["state"] == "scheduled"
    assert data["job"]["next_run_time"] == "2027-01-01T00:00:20+00:00"
    assert data["job"]["retry_attempts"] == 2
    (entry,) = data["fire_times"]
    assert entry["scheduled_time"] == "2027-01-01T00:00:10+00:00"
    assert entry["status"] == entry["outcome"] == "success"
    assert len(entry["run_ids"]) == 1
    assert data["now"] == (START + timedelta(seconds=10)).isoformat()
