"""What a store keeps must come back the same: from a new store instance, after a restart,
and with several schedulers sharing it."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections import Counter
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import anyio
import pytest

from horae import (
    EVENT_JOB_ERROR,
    AndTrigger,
    AsyncScheduler,
    CalendarIntervalTrigger,
    CronTrigger,
    DateTrigger,
    Event,
    IntervalTrigger,
    InvalidCallableError,
    Job,
    JobError,
    OrTrigger,
    RunOutcome,
    SerializationError,
)
from horae.stores.base import Store
from horae.testing import FakeClock, wait_idle

from .. import jobfuncs
from .conftest import StoreFactory, context

pytestmark = pytest.mark.anyio

T0 = datetime(2027, 1, 1, tzinfo=timezone.utc)

TRIGGERS = [
    DateTrigger(run_date="2027-02-14 16:38:05", timezone="Europe/Paris"),
    IntervalTrigger(
        minutes=90, start_date=T0, end_date="2027-06-01T00:00:00+00:00", timezone="UTC"
    ),
    CalendarIntervalTrigger(months=1, hour=9, start_date="2027-01-31", timezone="America/New_York"),
    CronTrigger(day="last fri", hour="9-17/2", minute=30, timezone="Australia/Lord_Howe"),
    CronTrigger.from_crontab("*/5 9-17 * * mon-fri", timezone="Europe/London"),
    AndTrigger(
        [CronTrigger(hour=9, timezone="UTC"), CronTrigger(day_of_week="mon", timezone="UTC")]
    ),
    OrTrigger(
        [
            IntervalTrigger(hours=5, start_date=T0, timezone="UTC"),
            CronTrigger(minute=7, timezone="UTC"),
        ]
    ),
]

ARGUMENTS: list[Any] = [
    None,
    True,
    7,
    2.5,
    "text ✓",
    [1, [2, 3]],
    {"nested": {"k": [1, None]}},
    (1, 2),
    {3, 4},
    frozenset({"a"}),
    datetime(2027, 3, 28, 1, 30, tzinfo=timezone.utc),
    date(2027, 2, 28),
    time(23, 59, 59, 999999),
    timedelta(hours=-3),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    Decimal("3.14159"),
    b"\x00\x01",
]


def make_job(job_id: str, trigger: Any, **changes: Any) -> Job:
    values: dict[str, Any] = {
        "id": job_id,
        "func": jobfuncs.async_add,
        "func_ref": "tests.jobfuncs:async_add",
        "trigger": trigger,
        "args": (1, 2),
        "next_run_time": trigger.next(T0),
    }
    values.update(changes)
    return Job(**values)


async def reopened(factory: StoreFactory) -> Store:
    store = factory()
    await store.start(context("reader"))
    return store


@pytest.mark.parametrize("trigger", TRIGGERS, ids=lambda t: type(t).__name__)
async def test_every_trigger_round_trips(
    store: Store, store_factory: StoreFactory, trigger: Any
) -> None:
    job = make_job("t", trigger, name="trig", metadata={"owner": "ops"}, max_instances=4)
    await store.add_jobs([job], replace=False)
    other = await reopened(store_factory)
    try:
        back = await other.get_job("t")
    finally:
        await other.stop()
    assert back == job
    assert back.next_run_time == job.next_run_time
    assert back.trigger.next(T0) == trigger.next(T0)


async def test_every_argument_type_round_trips(store: Store, store_factory: StoreFactory) -> None:
    job = make_job(
        "a",
        IntervalTrigger(seconds=5, start_date=T0, timezone="UTC"),
        args=tuple(ARGUMENTS),
        kwargs={"when": datetime(2027, 1, 1, 12, tzinfo=timezone.utc), "amount": Decimal("1.10")},
    )
    await store.add_jobs([job], replace=False)
    other = await reopened(store_factory)
    try:
        back = await other.get_job("a")
    finally:
        await other.stop()
    assert back.args == job.args
    assert [type(a) for a in back.args] == [type(a) for a in job.args]
    assert back.kwargs == job.kwargs


async def test_restart_keeps_jobs_and_their_options(store_factory: StoreFactory) -> None:
    clock = FakeClock(T0)
    async with AsyncScheduler(store_factory(), clock=clock, timezone="UTC") as scheduler:
        await scheduler.add_job(
            jobfuncs.async_add,
            "cron",
            hour=9,
            args=[1],
            kwargs={"b": 2},
            id="cron",
            coalesce=False,
            max_instances=3,
            misfire_grace_time=60,
            jitter=5,
            timeout=30,
            metadata={"team": "ops"},
        )
        await scheduler.add_job(jobfuncs.sync_add, "interval", minutes=5, args=[4], id="every5")
        await scheduler.add_job(
            "tests.jobfuncs:sync_add", "date", run_date=T0 + timedelta(days=1), args=[5], id="once"
        )
        await scheduler.pause_job("every5")
        before = {job.id: job for job in await scheduler.get_jobs()}
    async with AsyncScheduler(store_factory(), clock=clock, timezone="UTC") as scheduler:
        after = {job.id: job for job in await scheduler.get_jobs()}
    assert after == before
    assert after["cron"].next_run_time == T0 + timedelta(hours=9)
    assert after["every5"].paused
    assert after["cron"].misfire_grace_time == timedelta(seconds=60)


async def test_jobs_run_on_the_store(store_factory: StoreFactory) -> None:
    clock = FakeClock(T0)
    async with AsyncScheduler(store_factory(), clock=clock, timezone="UTC") as scheduler:
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1, 2], id="a")
        await scheduler.add_job(jobfuncs.sync_fail, "interval", seconds=10, args=["x"], id="f")
        for _ in range(3):
            clock.advance(10)
            await wait_idle(scheduler)
        runs = await scheduler.get_runs("a")
        assert [(r.scheduled_time, r.outcome, r.result) for r in runs] == [
            (T0 + timedelta(seconds=s), RunOutcome.SUCCESS, 3) for s in (30, 20, 10)
        ]
        (failed, *_) = await scheduler.get_runs("f")
        assert failed.outcome is RunOutcome.ERROR
        assert "ValueError: x" in (failed.error or "")
        assert (await scheduler.get_job("a")).next_run_time == T0 + timedelta(seconds=40)


async def test_several_schedulers_run_each_fire_time_once(store_factory: StoreFactory) -> None:
    clock = FakeClock(T0)
    jobfuncs.calls.clear()
    async with (
        AsyncScheduler(store_factory(), clock=clock, timezone="UTC", batch_size=7) as a,
        AsyncScheduler(store_factory(), clock=clock, timezone="UTC", batch_size=7) as b,
        AsyncScheduler(store_factory(), clock=clock, timezone="UTC", batch_size=7) as c,
    ):
        for i in range(60):
            await a.add_job(jobfuncs.sync_add, "interval", seconds=10, args=[i], id=f"job{i}")
        for _ in range(5):
            clock.advance(10)
            for _ in range(3):
                for scheduler in (a, b, c):
                    await wait_idle(scheduler)
        runs = [run for i in range(60) for run in await a.get_runs(f"job{i}")]
    fire_times = Counter((r.job_id, r.scheduled_time) for r in runs)
    assert len(fire_times) == 60 * 5
    assert set(fire_times.values()) == {1}
    assert {r.outcome for r in runs} == {RunOutcome.SUCCESS}
    assert len(jobfuncs.calls) == 60 * 5


async def test_unstorable_jobs_are_refused_at_add_job(
    store_factory: StoreFactory, store_name: str
) -> None:
    if store_name == "memory":
        pytest.skip("the memory store keeps objects: lambdas and sockets are fine there")
    async with AsyncScheduler(store_factory(), clock=FakeClock(T0)) as scheduler:
        with pytest.raises(InvalidCallableError, match="lambda"):
            await scheduler.add_job(lambda: None)
        with pytest.raises(SerializationError, match=r"args\[1\]"):
            await scheduler.add_job(jobfuncs.sync_add, args=[1, object()])
        assert await scheduler.get_jobs() == []


async def test_corrupted_job_is_reported_kept_and_backed_off(
    store_factory: StoreFactory, store_name: str
) -> None:
    module = importlib.import_module(f"tests.stores.target_{store_name}")
    corrupt = getattr(module, "corrupt", None)
    if corrupt is None:
        pytest.skip(f"the {store_name} store keeps objects, not rows to corrupt")
    clock = FakeClock(T0)
    errors: list[Event] = []
    store = store_factory()
    async with AsyncScheduler(store, clock=clock, timezone="UTC") as scheduler:
        scheduler.add_listener(errors.append, EVENT_JOB_ERROR)
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="bad")
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="good")
        await corrupt(store, "bad")
        clock.advance(10)
        await wait_idle(scheduler)
        assert [e.job_id for e in errors if isinstance(e, JobError)] == ["bad"]
        assert "cannot be read back" in errors[0].traceback  # type: ignore[attr-defined]
        assert len(await scheduler.get_runs("good")) == 1
        # Still stored, looked at again later, not deleted.
        clock.advance(10)
        await wait_idle(scheduler)
        assert len(errors) == 1
        assert [j.id for j in await scheduler.get_jobs()] == ["good"]
    reader = await reopened(store_factory)
    try:
        assert await reader.next_run_time() is not None
        leases = await reader.acquire_jobs("reader", T0 + timedelta(days=1), 10, 30)
        assert "bad" in {lease.job_id for lease in leases}
        assert next(lease for lease in leases if lease.job_id == "bad").job is None
    finally:
        await reader.stop()
    await anyio.lowlevel.checkpoint()


async def test_a_module_that_raises_on_import_is_reported_like_a_corrupted_job(
    store_factory: StoreFactory,
    store_name: str,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A deploy breaks a module (a SyntaxError, a missing setting raising RuntimeError):
    # not an ImportError, and it must not hold up the jobs leased in the same batch.
    if store_name == "memory":
        pytest.skip("the memory store keeps callables, it never imports them again")
    name = f"horae_broken_{uuid.uuid4().hex}"
    source = tmp_path / f"{name}.py"
    source.write_text("async def f() -> None:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("sys.dont_write_bytecode", True)
    clock = FakeClock(T0)
    errors: list[Event] = []
    async with AsyncScheduler(store_factory(), clock=clock, timezone="UTC") as scheduler:
        scheduler.add_listener(errors.append, EVENT_JOB_ERROR)
        await scheduler.add_job(f"{name}:f", "interval", seconds=10, id="bad")
        await scheduler.add_job(jobfuncs.async_add, "interval", seconds=10, args=[1], id="good")
        source.write_text("raise RuntimeError('a setting is missing')\n")
        monkeypatch.delitem(sys.modules, name)
        importlib.invalidate_caches()
        clock.advance(10)
        await wait_idle(scheduler)
        assert [e.job_id for e in errors if isinstance(e, JobError)] == ["bad"]
        assert "a setting is missing" in errors[0].traceback  # type: ignore[attr-defined]
        assert len(await scheduler.get_runs("good")) == 1
        assert [j.id for j in await scheduler.get_jobs()] == ["good"]


async def test_add_jobs_batch_is_stored(store_factory: StoreFactory) -> None:
    clock = FakeClock(T0)
    async with AsyncScheduler(store_factory(), clock=clock, timezone="UTC") as scheduler:
        await scheduler.add_jobs(
            [
                {
                    "func": jobfuncs.async_add,
                    "trigger": "interval",
                    "seconds": 10,
                    "args": [i],
                    "id": f"b{i}",
                }
                for i in range(50)
            ]
        )
        clock.advance(10)
        await wait_idle(scheduler)
        assert len(await scheduler.get_jobs()) == 50
        assert (await scheduler.get_runs("b7"))[0].result == 7
