"""Events across processes: what one scheduler does, schedulers sharing its store see.

Two store instances from one factory play two processes (the memory store's factory
gives one instance, which two schedulers of one process share). Delivery crosses a
real channel (NOTIFY, PUBLISH, the SQLite events table), so waits are bounded with
``fail_after`` rather than driven by the fake clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

import anyio
import pytest

from horae import (
    AllJobsRemoved,
    AsyncScheduler,
    Event,
    JobAdded,
    JobError,
    JobExecuted,
    JobModified,
    JobRemoved,
    JobSubmitted,
    Subscription,
)
from horae.stores.base import Store, StoreContext
from horae.testing import FakeClock, wait_idle

from .conftest import StoreFactory

pytestmark = pytest.mark.anyio

T0 = datetime(2027, 1, 1, tzinfo=timezone.utc)
# Generous: the SQLite store's pollers look every second.
DELIVERY = 15

E = TypeVar("E", bound=Event)


async def wait_for(
    events: Subscription[Any], cls: type[E], match: Callable[[E], bool] = lambda e: True
) -> E:
    """The next event of ``cls`` that ``match``es, skipping others; fails after DELIVERY s."""
    with anyio.fail_after(DELIVERY):
        async for event in events:
            if isinstance(event, cls) and match(event):
                return event
    raise AssertionError(f"the subscription ended before a {cls.__name__} came")


def drain(events: Subscription[Any]) -> list[Event]:
    received = []
    while True:
        try:
            received.append(events.receive_nowait())
        except anyio.WouldBlock:
            return received


@asynccontextmanager
async def pair(
    store_factory: StoreFactory, a_role: str = "scheduler", b_role: str = "client"
) -> AsyncIterator[tuple[AsyncScheduler, AsyncScheduler, FakeClock]]:
    clock = FakeClock(T0)
    a = AsyncScheduler(
        store_factory(),
        clock=clock,
        timezone="UTC",
        role=a_role,  # type: ignore[arg-type]
        scheduler_id="a",
        share_events=True,
    )
    b = AsyncScheduler(
        store_factory(),
        clock=clock,
        timezone="UTC",
        role=b_role,  # type: ignore[arg-type]
        scheduler_id="b",
        share_events=True,
    )
    async with a, b:
        yield a, b, clock


async def test_job_events_reach_the_other_scheduler(store_factory: StoreFactory) -> None:
    async with pair(store_factory) as (a, b, _), b.subscribe() as events:
        await a.add_job("tests.jobfuncs:async_add", "interval", seconds=60, args=[1], id="j")
        await a.modify_job("j", name="renamed")
        await a.remove_job("j")
        await a.remove_all_jobs()
        added = await wait_for(events, JobAdded)
        modified = await wait_for(events, JobModified)
        removed = await wait_for(events, JobRemoved)
        cleared = await wait_for(events, AllJobsRemoved)
    assert (added.job_id, modified.job_id, removed.job_id) == ("j", "j", "j")
    assert {e.origin for e in (added, modified, removed, cleared)} == {"a"}
    assert added.timestamp == T0


async def test_run_outcomes_reach_the_other_scheduler(store_factory: StoreFactory) -> None:
    async with pair(store_factory) as (a, b, _), b.subscribe(JobExecuted, JobError) as events:
        await a.add_job("tests.jobfuncs:async_add", args=[2, 3], id="ok")
        await wait_idle(a)
        executed = await wait_for(events, JobExecuted)
        await a.add_job("tests.jobfuncs:sync_fail", args=["kaput"], id="bad")
        await wait_idle(a)
        failed = await wait_for(events, JobError)
    assert (executed.job_id, executed.result, executed.origin) == ("ok", 5, "a")
    assert executed.scheduled_time == T0
    assert (failed.job_id, failed.origin) == ("bad", "a")
    assert "ValueError: kaput" in failed.traceback
    assert failed.exception is None  # the exception object stays where it was raised


async def test_no_event_comes_back_to_its_sender(store_factory: StoreFactory) -> None:
    async with (
        pair(store_factory, b_role="scheduler") as (a, b, _),
        a.subscribe(JobAdded) as a_events,
        b.subscribe(JobAdded) as b_events,
    ):
        await a.add_job("tests.jobfuncs:async_add", "interval", seconds=60, args=[1], id="a1")
        assert (await wait_for(b_events, JobAdded)).job_id == "a1"
        # b's event is sent after a's: had a's own come back, it would be there first.
        await b.add_job("tests.jobfuncs:async_add", "interval", seconds=60, args=[1], id="b1")
        from_b = await wait_for(a_events, JobAdded, lambda e: e.origin == "b")
        seen_by_a = drain(a_events)
        seen_by_b = drain(b_events)
    assert from_b.job_id == "b1"
    assert seen_by_a == []  # a's own JobAdded(a1) came once, before b's, and only once
    assert [(e.job_id, e.origin) for e in seen_by_b] == [("b1", "b")]


async def test_a_clients_events_reach_a_running_scheduler(store_factory: StoreFactory) -> None:
    async with (
        pair(store_factory, a_role="client", b_role="scheduler") as (a, b, _),
        b.subscribe(JobAdded) as b_events,
        a.subscribe(JobSubmitted, JobExecuted) as a_events,
    ):
        await a.add_job("tests.jobfuncs:async_add", args=[4], id="from-client")
        added = await wait_for(b_events, JobAdded)
        # The client's change woke the scheduler, which ran the job; the client hears of it.
        submitted = await wait_for(a_events, JobSubmitted)
        executed = await wait_for(a_events, JobExecuted)
    assert (added.job_id, added.origin) == ("from-client", "a")
    assert (submitted.origin, executed.origin, executed.result) == ("b", "b", 4)


async def test_a_scheduler_not_sharing_sends_nothing(store_factory: StoreFactory) -> None:
    clock = FakeClock(T0)
    quiet = AsyncScheduler(store_factory(), clock=clock, role="client", scheduler_id="quiet")
    loud = AsyncScheduler(
        store_factory(), clock=clock, role="client", scheduler_id="loud", share_events=True
    )
    async with quiet, loud, loud.subscribe(JobAdded) as events:
        await quiet.add_job("tests.jobfuncs:async_add", "interval", seconds=60, args=[1], id="q")
        await wait_idle(quiet)
        # A marker from a third sharer: once it arrived, quiet's event would have too.
        async with AsyncScheduler(
            store_factory(), clock=clock, role="client", scheduler_id="marker", share_events=True
        ) as marker:
            await marker.add_job("tests.jobfuncs:async_add", "interval", seconds=60, args=[1])
            await wait_for(events, JobAdded, lambda e: e.origin == "marker")
        assert drain(events) == []


async def test_broadcast_reaches_other_store_instances_only(store_factory: StoreFactory) -> None:
    sent = [JobAdded(timestamp=T0, job_id=f"j{i}", origin="x") for i in range(300)]
    received: dict[str, list[Event]] = {"x": [], "y": []}
    all_there = anyio.Event()

    def context_of(name: str) -> StoreContext:
        def publish(event: Event) -> None:
            received[name].append(event)
            if len(received["y"]) == len(sent):
                all_there.set()

        return StoreContext(scheduler_id=name, wakeup=lambda: None, publish=publish)

    x: Store = store_factory()
    y: Store = store_factory()
    await x.start(context_of("x"))
    try:
        await y.start(context_of("y"))
        try:
            await x.broadcast(sent)
            with anyio.fail_after(DELIVERY):
                await all_there.wait()
        finally:
            await y.stop()
    finally:
        await x.stop()
    assert received["y"] == sent  # in order, whole
    assert received["x"] == []
