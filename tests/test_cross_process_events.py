"""Events shared between schedulers: their JSON form, origins, batching, and the switch.

Delivery through each store is in tests/stores/test_events.py; here the memory store,
shared by two schedulers of one process, stands in for a shared database.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from horae import (
    AllJobsRemoved,
    AsyncScheduler,
    Event,
    JobAbandoned,
    JobAdded,
    JobError,
    JobExecuted,
    JobMissed,
    JobModified,
    JobRemoved,
    JobSkipped,
    JobSubmitted,
    JobTimedOut,
    JSONSerializer,
    Scheduler,
    SchedulerStarted,
)
from horae._event_codec import event_from_json, event_to_json, pack, unpack
from horae.errors import DeserializationError, SerializationError
from horae.stores.memory import MemoryStore
from horae.testing import FakeClock, wait_idle

from . import jobfuncs

pytestmark = pytest.mark.anyio

T0 = datetime(2027, 1, 1, tzinfo=timezone.utc)
RUN = uuid.UUID(int=7)
SERIALIZER = JSONSerializer()


def every_shared_event() -> list[Event]:
    run: dict[str, Any] = {
        "timestamp": T0,
        "origin": "a",
        "job_id": "j",
        "run_id": RUN,
        "scheduled_time": T0 - timedelta(seconds=1),
    }
    return [
        JobAdded(timestamp=T0, origin="a", job_id="j"),
        JobModified(timestamp=T0, origin="a", job_id="j"),
        JobRemoved(timestamp=T0, origin="a", job_id="j"),
        AllJobsRemoved(timestamp=T0, origin="a"),
        JobSubmitted(**run, coalesced=3),
        JobExecuted(**run, result={"when": T0, "ids": (1, 2)}),
        JobError(**run, traceback="Traceback ...\nValueError: x"),
        JobMissed(**run, coalesced=2),
        JobSkipped(**run),
        JobTimedOut(**run),
        JobAbandoned(**run, reason="the scheduler died"),
    ]


# ------------------------------------------------------------------ the JSON form


@pytest.mark.parametrize("event", every_shared_event(), ids=lambda e: type(e).__name__)
def test_every_shared_event_round_trips(event: Event) -> None:
    data = event_to_json(event, SERIALIZER)
    assert json.loads(json.dumps(data)) == data  # plain JSON
    assert event_from_json(data, SERIALIZER) == event


def test_a_result_that_cannot_be_stored_travels_as_none() -> None:
    event = JobExecuted(
        timestamp=T0, job_id="j", run_id=RUN, scheduled_time=T0, result=object(), origin="a"
    )
    back = event_from_json(event_to_json(event, SERIALIZER), SERIALIZER)
    assert isinstance(back, JobExecuted)
    assert back.result is None


def test_the_exception_stays_and_the_traceback_travels() -> None:
    event = JobError(
        timestamp=T0,
        job_id="j",
        run_id=RUN,
        scheduled_time=T0,
        exception=ValueError("x"),
        traceback="ValueError: x",
    )
    back = event_from_json(event_to_json(event, SERIALIZER), SERIALIZER)
    assert isinstance(back, JobError)
    assert (back.exception, back.traceback) == (None, "ValueError: x")


def test_scheduler_events_do_not_travel() -> None:
    with pytest.raises(SerializationError, match="do not travel"):
        event_to_json(SchedulerStarted(timestamp=T0, scheduler_id="a"), SERIALIZER)
    with pytest.raises(DeserializationError, match="unknown event type"):
        event_from_json({"type": "SchedulerStarted", "timestamp": T0.isoformat()}, SERIALIZER)


def test_unknown_types_and_fields_from_newer_versions_are_skipped() -> None:
    added = event_to_json(JobAdded(timestamp=T0, job_id="j", origin="a"), SERIALIZER)
    message = json.dumps(
        {
            "v": 1,
            "from": "s",
            "events": [
                {"type": "JobTeleported", "job_id": "j"},
                {**added, "colour": "blue"},
            ],
        }
    )
    assert unpack(message, SERIALIZER) == ("s", [JobAdded(timestamp=T0, job_id="j", origin="a")])


def test_unreadable_messages_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="horae.events"):
        assert unpack("{not json", SERIALIZER) == ("", [])
        assert unpack(json.dumps({"v": 99, "from": "s", "events": []}), SERIALIZER) == ("s", [])
        broken = {"type": "JobAdded", "timestamp": "yesterday", "job_id": "j"}
        assert unpack(json.dumps({"v": 1, "from": "s", "events": [broken]}), SERIALIZER)[1] == []
    assert len(caplog.records) == 3


@pytest.mark.parametrize(
    "message",
    [
        {"v": 1, "from": "s", "events": 5},
        {"v": 1, "from": "s", "events": None},
        {"v": 1, "from": "s", "events": "JobAdded"},
        {"v": 1, "from": "s", "events": {"type": "JobAdded"}},
    ],
)
def test_a_message_whose_events_are_not_a_list_is_skipped(message: dict[str, object]) -> None:
    # Anyone who can PUBLISH/NOTIFY on the channel can send this; a reader that raised
    # here would lose its listener (RedisStore) or poller thread (SQLiteStore) for good.
    assert unpack(json.dumps(message), SERIALIZER) == ("s", [])


def test_pack_keeps_order_and_the_size_limit() -> None:
    events = [JobAdded(timestamp=T0, job_id=f"job-{i}", origin="a") for i in range(500)]
    messages = pack("sender", events, SERIALIZER, limit=2000)
    assert len(messages) > 1
    assert all(len(m.encode()) <= 2000 for m in messages)
    received = [e for m in messages for e in unpack(m, SERIALIZER)[1]]
    assert received == events
    assert len(pack("sender", events, SERIALIZER)) == 1
    assert pack("sender", [], SERIALIZER, limit=2000) == []


def test_an_oversized_event_is_cut_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    trace = "".join(f'  File "x.py", line {i}, in f\n' for i in range(2000)) + "KeyError: 'k'"
    error = JobError(timestamp=T0, job_id="j", run_id=RUN, scheduled_time=T0, traceback=trace)
    big = JobExecuted(timestamp=T0, job_id="j", run_id=RUN, scheduled_time=T0, result="x" * 9000)
    with caplog.at_level(logging.WARNING, logger="horae.events"):
        messages = pack("sender", [error, big], SERIALIZER, limit=7900)
    assert all(len(m.encode()) <= 7900 for m in messages)
    cut_error, cut_big = [e for m in messages for e in unpack(m, SERIALIZER)[1]]
    assert isinstance(cut_error, JobError)
    assert cut_error.traceback.endswith("KeyError: 'k'")  # the end names the exception
    assert "characters cut" in cut_error.traceback
    assert isinstance(cut_big, JobExecuted)
    assert cut_big.result is None
    assert len([r for r in caplog.records if "was cut" in r.getMessage()]) == 2


def test_an_event_that_cannot_be_cut_enough_is_logged_not_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    huge_id = JobAdded(timestamp=T0, job_id="j" * 5000, origin="a")
    small = JobAdded(timestamp=T0, job_id="k", origin="a")
    with caplog.at_level(logging.ERROR, logger="horae.events"):
        messages = pack("sender", [huge_id, small], SERIALIZER, limit=1000)
    assert [e for m in messages for e in unpack(m, SERIALIZER)[1]] == [small]
    assert any("do not see it" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------- schedulers in one process


async def test_local_events_carry_their_schedulers_id() -> None:
    clock = FakeClock(T0)
    scheduler = AsyncScheduler(clock=clock, timezone="UTC", scheduler_id="me")
    async with scheduler, scheduler.subscribe() as events:
        await scheduler.add_job(jobfuncs.async_add, args=[1], id="j")
        await wait_idle(scheduler)
        await scheduler.add_job(jobfuncs.async_fail, id="bad")
        await wait_idle(scheduler)
        await scheduler.pause()
        received = []
        while True:
            try:
                received.append(events.receive_nowait())
            except anyio.WouldBlock:
                break
    kinds = [type(e).__name__ for e in received]
    assert kinds == [
        "JobAdded",
        "JobRemoved",  # a run-once job is gone once its run is released
        "JobSubmitted",
        "JobExecuted",
        "JobAdded",
        "JobRemoved",
        "JobSubmitted",
        "JobError",
        "SchedulerPaused",
    ]
    assert {e.origin for e in received} == {"me"}


async def test_two_schedulers_sharing_a_memory_store() -> None:
    clock = FakeClock(T0)
    store = MemoryStore()
    runner = AsyncScheduler(
        store, clock=clock, timezone="UTC", scheduler_id="runner", share_events=True
    )
    watcher = AsyncScheduler(store, clock=clock, timezone="UTC", role="client")
    async with runner, watcher, watcher.subscribe() as events:
        await runner.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1, 1], id="j")
        clock.advance(10)
        await wait_idle(runner)
        # In one process the memory store hands the events over as soon as the runner's
        # sender task has run: wait_idle covers it.
        received = []
        while True:
            try:
                received.append(events.receive_nowait())
            except anyio.WouldBlock:
                break
    assert [type(e).__name__ for e in received] == ["JobAdded", "JobSubmitted", "JobExecuted"]
    assert {e.origin for e in received} == {"runner"}
    executed = received[-1]
    assert isinstance(executed, JobExecuted)
    assert executed.result == 2
    assert executed.scheduled_time == T0 + timedelta(seconds=10)


async def test_events_of_one_loop_turn_go_in_one_broadcast() -> None:
    class CountingStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[int] = []

        async def broadcast(self, events: Any) -> None:
            self.batches.append(len(events))
            await super().broadcast(events)

    clock = FakeClock(T0)
    store = CountingStore()
    async with AsyncScheduler(store, clock=clock, timezone="UTC", share_events=True) as s:
        await s.pause()
        for i in range(50):
            await s.add_job(jobfuncs.async_add, args=[i], id=f"j{i}")
        await wait_idle(s)
        store.batches.clear()
        await s.resume()
        await wait_idle(s)
    # 50 runs: 150 events (submitted, executed, removed), in a few batches, not 150.
    assert sum(store.batches) == 150
    assert len(store.batches) <= 5


async def test_a_failing_broadcast_is_logged_once_and_never_stops_the_scheduler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class BrokenStore(MemoryStore):
        async def broadcast(self, events: Any) -> None:
            raise OSError("the network is down")

    clock = FakeClock(T0)
    with caplog.at_level(logging.WARNING, logger="horae.scheduler"):
        async with AsyncScheduler(
            BrokenStore(), clock=clock, timezone="UTC", share_events=True
        ) as scheduler:
            for i in range(3):
                await scheduler.add_job(jobfuncs.async_add, args=[i])
                await wait_idle(scheduler)
    failures = [r for r in caplog.records if "could not send events" in r.getMessage()]
    assert len(failures) == 1
    assert "the network is down" in failures[0].getMessage()


async def test_share_events_is_off_by_default() -> None:
    class CountingStore(MemoryStore):
        broadcasts = 0

        async def broadcast(self, events: Any) -> None:
            CountingStore.broadcasts += 1

    clock = FakeClock(T0)
    async with AsyncScheduler(CountingStore(), clock=clock, timezone="UTC") as scheduler:
        assert scheduler.share_events is False
        await scheduler.add_job(jobfuncs.async_add, args=[1])
        await wait_idle(scheduler)
    assert CountingStore.broadcasts == 0


def test_the_sync_facade_passes_share_events_on() -> None:
    assert Scheduler(share_events=True).async_scheduler.share_events is True
    assert Scheduler().async_scheduler.share_events is False
