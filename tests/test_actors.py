"""Every change to the jobs is an event naming who made it: ``actor=`` on add_job,
add_jobs, scheduled_job, reschedule_job and remove_all_jobs (as on pause_job, resume_job,
modify_job and remove_job, tested in test_controls.py), on the blocking facade too, and
through the event codec to other schedulers."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from horae import (
    AllJobsRemoved,
    AsyncScheduler,
    Event,
    JobAdded,
    JobArgumentError,
    JobModified,
    MemoryStore,
    Scheduler,
)
from horae._event_codec import event_from_json, event_to_json
from horae.serializers import JSONSerializer
from horae.testing import FakeClock

from . import jobfuncs

pytestmark = pytest.mark.anyio


def _actors(events: list[Event]) -> list[tuple[str, str, str]]:
    return [
        (type(e).__name__, getattr(e, "job_id", ""), getattr(e, "actor", "-"))
        for e in events
        if isinstance(e, (JobAdded, JobModified, AllJobsRemoved))
    ]


async def test_adding_rescheduling_and_removing_all_name_the_actor(clock: FakeClock) -> None:
    events: list[Event] = []
    scheduler = AsyncScheduler(MemoryStore(), clock=clock, timezone="UTC")
    scheduler.add_listener(events.append)
    await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[1], id="early",
                            actor="setup script")  # fmt: skip

    @scheduler.scheduled_job("interval", seconds=5, id="decorated", args=[2], actor="module")
    async def decorated(a: int) -> int:
        return a

    async with scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[3], id="a",
                                actor="alice")  # fmt: skip
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=5, args=[4], id="b")
        await scheduler.add_jobs(
            [
                {"func": jobfuncs.async_add, "trigger": "interval", "seconds": 5, "args": [5],
                 "id": "c"},
                {"func": jobfuncs.async_add, "trigger": "interval", "seconds": 5, "args": [6],
                 "id": "d", "actor": "erin"},
            ],
            actor="batch",
        )  # fmt: skip
        await scheduler.reschedule_job("a", "interval", minutes=1, actor="carol")
        await scheduler.reschedule_job("b", "cron", hour=3)
        await scheduler.remove_all_jobs(actor="dave")
    assert _actors(events) == [
        ("JobAdded", "early", "setup script"),
        ("JobAdded", "decorated", "module"),
        ("JobAdded", "a", "alice"),
        ("JobAdded", "b", ""),
        ("JobAdded", "c", "batch"),
        ("JobAdded", "d", "erin"),
        ("JobModified", "a", "carol"),
        ("JobModified", "b", ""),
        ("AllJobsRemoved", "", "dave"),
    ]


async def test_an_actor_that_is_not_text_is_refused(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, timezone="UTC") as scheduler:
        with pytest.raises(JobArgumentError, match="actor: 7 is not a string"):
            await scheduler.add_job(jobfuncs.async_add, args=[1], actor=7)  # type: ignore[arg-type]
        with pytest.raises(JobArgumentError, match="spec 1: actor: b'x' is not a string"):
            await scheduler.add_jobs(
                [
                    {"func": jobfuncs.async_add, "args": [1]},
                    {"func": jobfuncs.async_add, "args": [1], "actor": b"x"},
                ]
            )
        with pytest.raises(JobArgumentError, match="actor: None is not a string"):
            await scheduler.remove_all_jobs(actor=None)  # type: ignore[arg-type]
        assert await scheduler.get_jobs() == []


def test_the_codec_carries_the_actor_and_reads_older_events() -> None:
    serializer = JSONSerializer()
    now = datetime(2027, 1, 1, tzinfo=timezone.utc)
    for event in (
        JobAdded(timestamp=now, origin="s1", job_id="j", actor="cli alice@host"),
        AllJobsRemoved(timestamp=now, origin="s1", actor="dashboard 10.0.0.7"),
    ):
        data = event_to_json(event, serializer)
        assert data["actor"] == event.actor
        assert event_from_json(data, serializer) == event
        # From a horae before actors: no such field, read as "".
        del data["actor"]
        assert event_from_json(data, serializer).actor == ""  # type: ignore[attr-defined]


def test_the_blocking_facade_passes_the_actor_on() -> None:
    events: list[Event] = []
    with Scheduler(MemoryStore(), timezone="UTC") as scheduler:
        scheduler.add_listener(events.append)
        scheduler.add_job(jobfuncs.sync_add, "interval", hours=1, args=[1], id="x", actor="ann")
        scheduler.add_jobs(
            [{"func": jobfuncs.sync_add, "trigger": "interval", "hours": 1, "args": [2],
              "id": "y"}],
            actor="bo",
        )  # fmt: skip
        scheduler.reschedule_job("x", "interval", hours=2, actor="cy")
        scheduler.remove_all_jobs(actor="di")
    assert _actors(events) == [
        ("JobAdded", "x", "ann"),
        ("JobAdded", "y", "bo"),
        ("JobModified", "x", "cy"),
        ("AllJobsRemoved", "", "di"),
    ]
