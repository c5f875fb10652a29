"""Event codes, masks and subscription streams."""

from __future__ import annotations

from datetime import datetime, timezone

import anyio
import pytest

import horae
from horae import (
    EVENT_ALL,
    EVENT_JOB_ADDED,
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    AsyncScheduler,
    Event,
    JobAdded,
    JobError,
    JobExecuted,
    JobRemoved,
)
from horae.events import EventHub
from horae.testing import FakeClock, wait_idle

from . import jobfuncs

pytestmark = pytest.mark.anyio

NOW = datetime(2027, 1, 1, tzinfo=timezone.utc)


def test_codes_match_apscheduler3() -> None:
    # The values APScheduler 3 users have in their masks.
    assert horae.EVENT_SCHEDULER_STARTED == 1
    assert horae.EVENT_SCHEDULER_SHUTDOWN == 2
    assert horae.EVENT_JOB_ADDED == 512
    assert horae.EVENT_JOB_REMOVED == 1024
    assert horae.EVENT_JOB_EXECUTED == 4096
    assert horae.EVENT_JOB_ERROR == 8192
    assert horae.EVENT_JOB_MISSED == 16384
    assert horae.EVENT_JOB_SUBMITTED == 32768
    assert horae.EVENT_JOB_MAX_INSTANCES == 65536
    codes = [getattr(horae, n) for n in dir(horae) if n.startswith("EVENT_") and n != "EVENT_ALL"]
    for code in codes:
        assert code & EVENT_ALL == code
    assert JobExecuted.code == EVENT_JOB_EXECUTED
    assert JobError.code == EVENT_JOB_ERROR


async def test_listener_masks(clock: FakeClock) -> None:
    only_errors: list[Event] = []
    executed_or_added: list[Event] = []
    everything: list[Event] = []
    async with AsyncScheduler(clock=clock) as scheduler:
        scheduler.add_listener(only_errors.append, EVENT_JOB_ERROR)
        scheduler.add_listener(executed_or_added.append, EVENT_JOB_EXECUTED | EVENT_JOB_ADDED)
        scheduler.add_listener(everything.append)
        await scheduler.add_job(jobfuncs.async_add, args=[1], id="ok")
        await scheduler.add_job(jobfuncs.async_fail, id="bad")
        await wait_idle(scheduler)
    assert [type(e) for e in only_errors] == [JobError]
    assert {(type(e), e.job_id) for e in executed_or_added if isinstance(e, horae.JobEvent)} == {
        (JobAdded, "ok"),
        (JobAdded, "bad"),
        (JobExecuted, "ok"),
    }
    assert all(e.code & (EVENT_JOB_EXECUTED | EVENT_JOB_ADDED) for e in executed_or_added)
    assert len(everything) > len(executed_or_added) + len(only_errors)
    assert {e.code == EVENT_JOB_ERROR for e in only_errors} == {True}


async def test_subscribe_filters_by_type(scheduler: AsyncScheduler) -> None:
    async with scheduler.subscribe(JobAdded, JobRemoved) as events:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1], id="a")
        await scheduler.remove_job("a")
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1], id="b")
        got = [events.receive_nowait() for _ in range(3)]
        with pytest.raises(anyio.WouldBlock):
            events.receive_nowait()
    assert [(type(e), e.job_id) for e in got] == [
        (JobAdded, "a"),
        (JobRemoved, "a"),
        (JobAdded, "b"),
    ]


async def test_slow_subscriber_misses_but_never_blocks() -> None:
    hub = EventHub()
    async with hub.subscribe(JobAdded, max_buffer=3) as slow, hub.subscribe(JobAdded) as fast:
        for i in range(10):
            hub.publish(JobAdded(timestamp=NOW, job_id=str(i)))  # returns at once
        assert slow.missed == 7
        assert fast.missed == 0
        assert [slow.receive_nowait().job_id for _ in range(3)] == ["0", "1", "2"]
        assert [fast.receive_nowait().job_id for _ in range(10)] == [str(i) for i in range(10)]


async def test_streams_end_when_the_scheduler_stops(clock: FakeClock) -> None:
    received: list[Event] = []
    async with AsyncScheduler(clock=clock) as scheduler, anyio.create_task_group() as tg:

        async def consume() -> None:
            async with scheduler.subscribe() as events:
                async for event in events:
                    received.append(event)

        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        await scheduler.add_job(jobfuncs.async_add, args=[1])
        await wait_idle(scheduler)
        await scheduler.shutdown()
    # consume() returned on its own: the stream ended with the scheduler.
    assert any(isinstance(e, JobExecuted) for e in received)
    assert type(received[-1]).__name__ == "SchedulerStopped"
