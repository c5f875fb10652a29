"""horae.metrics: runs on the fake clock, then /metrics scraped and its counters checked."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from horae import (
    EVENT_JOB_SUBMITTED,
    AsyncScheduler,
    HoraeError,
    JobExecuted,
    MemoryStore,
    Retry,
    Scheduler,
    SQLiteStore,
)
from horae.metrics import PrometheusMetrics
from horae.stores.base import Store
from horae.testing import FakeClock, wait_idle

from . import jobfuncs
from .conftest import START as _START
from .test_controls import Slow
from .test_recovery import FlakyStore

pytestmark = pytest.mark.anyio

START = datetime.fromisoformat(_START)
OUTCOMES = ("success", "error", "timeout", "missed", "skipped", "abandoned", "cancelled")

Labels = tuple[tuple[str, str], ...]


async def hang() -> None:
    await anyio.sleep_forever()


def parse(text: str) -> dict[tuple[str, Labels], float]:
    """Every sample of an exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape(metrics: PrometheusMetrics) -> dict[tuple[str, Labels], float]:
    """GET /metrics through the ASGI app, as Prometheus would."""
    transport = httpx.ASGITransport(app=metrics.asgi_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def runs(samples: dict[tuple[str, Labels], float]) -> dict[tuple[str, str], float]:
    """horae_runs_total by (job_id, outcome), leaving out the zeros."""
    found: dict[tuple[str, str], float] = {}
    for (name, labels), value in samples.items():
        if name == "horae_runs_total" and value:
            label = dict(labels)
            found[label.get("job_id", ""), label["outcome"]] = value
    return found


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


async def _advance(clock: FakeClock, seconds: int) -> None:
    """Move the clock a second at a time, letting every task run at each (a run that
    sleeps on the clock keeps the scheduler busy, so wait_idle() does not apply)."""
    for _ in range(seconds):
        clock.advance(1)
        await anyio.wait_all_tasks_blocked()


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return SQLiteStore(tmp_path / "jobs.db")
    return MemoryStore()


async def test_runs_are_counted_by_job_and_outcome(clock: FakeClock, store: Store) -> None:
    async with AsyncScheduler(store, clock=clock, timezone="UTC") as scheduler:
        metrics = PrometheusMetrics(scheduler)  # attached to a running scheduler
        late_by_4 = START - timedelta(seconds=4)
        await scheduler.add_job(jobfuncs.async_add, "date", run_date=late_by_4, args=[1], id="ok")
        await scheduler.add_job(jobfuncs.async_fail, id="fail")
        await scheduler.add_job(hang, id="hang", timeout=0.01)
        await scheduler.add_job(
            jobfuncs.async_add, "interval", seconds=10, args=[1], id="late", misfire_grace_time=1
        )
        with anyio.fail_after(5):
            await wait_idle(scheduler)  # the timeout is real time
        clock.advance(25)  # 10 and 20 coalesce into one run, 5 s late: missed
        await wait_idle(scheduler)
        samples = await scrape(metrics)
    assert runs(samples) == {
        ("ok", "success"): 1,
        ("fail", "error"): 1,
        ("hang", "timeout"): 1,
        ("late", "missed"): 1,
    }
    # Submitted runs only: the missed fire time never started.
    assert value(samples, "horae_run_lateness_seconds_count") == 3
    assert value(samples, "horae_run_lateness_seconds_sum") == 4.0
    assert value(samples, "horae_run_lateness_seconds_bucket", le="2.5") == 2
    assert value(samples, "horae_run_lateness_seconds_bucket", le="5.0") == 3
    for job_id in ("ok", "fail", "hang"):
        assert value(samples, "horae_run_duration_seconds_count", job_id=job_id) == 1
    assert ("horae_run_duration_seconds_count", (("job_id", "late"),)) not in samples
    # Each fire time was leased once (the one-shot jobs, then "late" at 25 s).
    assert value(samples, "horae_acquire_batch_size_sum") == 4
    assert value(samples, "horae_store_errors_total") == 0
    assert value(samples, "horae_store_up") == 1
    assert value(samples, "horae_runs_in_progress") == 0
    assert value(samples, "horae_run_leases_held") == 0


async def test_skipped_runs_durations_and_runs_in_progress(clock: FakeClock) -> None:
    slow = Slow(clock, 25)
    scheduler = AsyncScheduler(clock=clock)
    metrics = PrometheusMetrics(scheduler)  # attached before the start
    async with scheduler:
        await scheduler.add_job(slow, "interval", seconds=10, id="slow", overlap="skip")
        await _advance(clock, 40)  # 10 runs until 35; 20 and 30 are skipped; 40 starts
        during = await scrape(metrics)
        await scheduler.remove_job("slow")
        await _advance(clock, 30)
        after = await scrape(metrics)
    assert runs(during) == {("slow", "success"): 1, ("slow", "skipped"): 2}
    assert value(during, "horae_run_duration_seconds_count", job_id="slow") == 1
    assert value(during, "horae_run_duration_seconds_sum", job_id="slow") == 25.0
    assert value(during, "horae_runs_in_progress") == 1
    assert value(during, "horae_run_leases_held") == 1
    assert runs(after) == {("slow", "success"): 2, ("slow", "skipped"): 2}
    assert value(after, "horae_run_duration_seconds_count", job_id="slow") == 2
    assert value(after, "horae_run_duration_seconds_sum", job_id="slow") == 50.0
    assert value(after, "horae_run_duration_seconds_bucket", job_id="slow", le="10.0") == 0
    assert value(after, "horae_run_duration_seconds_bucket", job_id="slow", le="30.0") == 2
    assert value(after, "horae_runs_in_progress") == 0
    assert value(after, "horae_run_leases_held") == 0


async def test_cancelled_runs_are_counted_and_timed(clock: FakeClock) -> None:
    slow = Slow(clock, 25)
    async with AsyncScheduler(clock=clock) as scheduler:
        metrics = PrometheusMetrics(scheduler)
        await scheduler.add_job(slow, "interval", seconds=10, id="c", overlap="cancel_other")
        await _advance(clock, 25)  # the run of 10 is cancelled at 20 by the fire time of 20
        samples = await scrape(metrics)
        await scheduler.remove_job("c")
        await _advance(clock, 30)
    assert runs(samples) == {("c", "cancelled"): 1}
    assert value(samples, "horae_run_duration_seconds_sum", job_id="c") == 10.0
    assert value(samples, "horae_runs_in_progress") == 1


async def test_each_attempt_counts_and_run_job_is_one_label(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        metrics = PrometheusMetrics(scheduler)
        await scheduler.add_job(jobfuncs.async_fail, id="r", retry=Retry(attempts=3, backoff=1))
        for _ in range(10):  # the retries wait 1 s, then 2 s
            clock.advance(1)
            await wait_idle(scheduler)
        for i in range(3):  # each call makes a job of its own id
            assert await scheduler.run_job(jobfuncs.async_add, args=[i]) == i
        samples = await scrape(metrics)
    assert runs(samples) == {("r", "error"): 3, ("run_job", "success"): 3}
    # A retry starts without a JobSubmitted: only the first attempt is timed.
    assert value(samples, "horae_run_duration_seconds_count", job_id="r") == 1
    assert value(samples, "horae_run_duration_seconds_count", job_id="run_job") == 3


async def test_acquire_batch_sizes(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock, batch_size=2) as scheduler:
        await scheduler.pause()
        metrics = PrometheusMetrics(scheduler)
        for i in range(5):
            await scheduler.add_job(jobfuncs.async_add, args=[i], id=f"j{i}")
        await scheduler.resume()  # five due jobs: batches of 2, 2 and 1
        await wait_idle(scheduler)
        samples = parse(metrics.render().decode())
    assert value(samples, "horae_acquire_batch_size_count") == 3
    assert value(samples, "horae_acquire_batch_size_sum") == 5
    assert value(samples, "horae_acquire_batch_size_bucket", le="1.0") == 1
    assert value(samples, "horae_acquire_batch_size_bucket", le="2.0") == 3
    assert sum(runs(samples).values()) == 5


async def test_store_outages_are_counted(clock: FakeClock) -> None:
    store = FlakyStore()
    async with AsyncScheduler(store, clock=clock, lease_duration=30) as scheduler:  # type: ignore[arg-type]
        metrics = PrometheusMetrics(scheduler)
        await scheduler.add_job(jobfuncs.async_add, "interval", days=1, args=[1], id="daily")
        clock.advance(40)
        await wait_idle(scheduler)
        ups: list[float] = []
        for _ in range(2):
            store.down = True
            for _ in range(3):  # one outage, however many calls fail in it
                clock.advance(10)
                await wait_idle(scheduler)
            ups.append(value(await scrape(metrics), "horae_store_up"))
            store.down = False
            clock.advance(30)  # past the longest backoff so far
            await wait_idle(scheduler)
            ups.append(value(await scrape(metrics), "horae_store_up"))
        samples = await scrape(metrics)
    assert ups == [0, 1, 0, 1]
    assert value(samples, "horae_store_errors_total") == 2


async def test_without_per_job_there_is_no_job_label(clock: FakeClock) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        metrics = PrometheusMetrics(scheduler, per_job=False)
        await scheduler.add_job(jobfuncs.async_add, args=[1], id="a")
        await scheduler.add_job(jobfuncs.async_add, args=[2], id="b")
        await scheduler.add_job(jobfuncs.async_fail, id="c")
        await wait_idle(scheduler)
        samples = await scrape(metrics)
    assert not [labels for (_, labels) in samples if "job_id" in dict(labels)]
    # Every outcome is there from the start, at 0 where nothing ended so.
    assert {
        dict(labels)["outcome"]: v
        for (name, labels), v in samples.items()
        if name == "horae_runs_total"
    } == {outcome: {"success": 2, "error": 1}.get(outcome, 0) for outcome in OUTCOMES}
    assert value(samples, "horae_run_duration_seconds_count") == 3


async def test_two_schedulers_have_registries_of_their_own(clock: FakeClock) -> None:
    async with (
        AsyncScheduler(clock=clock, scheduler_id="one") as one,
        AsyncScheduler(clock=clock, scheduler_id="two") as two,
    ):
        first, second = PrometheusMetrics(one), PrometheusMetrics(two)
        assert first.registry is not second.registry
        await one.add_job(jobfuncs.async_add, args=[1], id="x")
        for i in range(3):
            await two.add_job(jobfuncs.async_add, args=[i], id=f"y{i}")
        await wait_idle(one)
        await wait_idle(two)
        first_runs, second_runs = runs(await scrape(first)), runs(await scrape(second))
    assert first_runs == {("x", "success"): 1}
    assert second_runs == {(f"y{i}", "success"): 1 for i in range(3)}


async def test_a_given_registry_and_namespace(clock: FakeClock) -> None:
    registry = CollectorRegistry()
    async with AsyncScheduler(clock=clock) as scheduler:
        PrometheusMetrics(scheduler, registry=registry, namespace="jobs")
        await scheduler.add_job(jobfuncs.async_add, args=[1], id="x")
        await wait_idle(scheduler)
    assert registry.get_sample_value("jobs_runs_total", {"job_id": "x", "outcome": "success"}) == 1


async def test_events_of_other_schedulers_are_left_to_their_metrics(clock: FakeClock) -> None:
    # Events that other schedulers share through the store reach this one's listeners
    # too: counting them would count a run once per process.
    async with AsyncScheduler(clock=clock) as scheduler:
        metrics = PrometheusMetrics(scheduler)
        remote = JobExecuted(
            timestamp=START,
            origin="elsewhere",
            job_id="r",
            run_id=uuid.uuid4(),
            scheduled_time=START,
        )
        scheduler._hub.deliver(remote)
        await scheduler.add_job(jobfuncs.async_add, args=[1], id="x")
        await wait_idle(scheduler)
        samples = await scrape(metrics)
    assert runs(samples) == {("x", "success"): 1}


async def test_metrics_cost_nothing_until_attached_and_after_close(clock: FakeClock) -> None:
    scheduler = AsyncScheduler(clock=clock)

    def submitted_wanted() -> bool:
        return bool(scheduler._hub.wanted & EVENT_JOB_SUBMITTED)

    assert scheduler._on_acquired is None
    assert not submitted_wanted()
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(scheduler, registry=registry)
    assert scheduler._on_acquired is not None
    assert submitted_wanted()
    with pytest.raises(HoraeError, match="has metrics attached already"):
        PrometheusMetrics(scheduler)
    metrics.close()
    assert scheduler._on_acquired is None
    assert not submitted_wanted()
    assert b"horae_runs" not in metrics.render()
    metrics.close()  # twice is harmless
    again = PrometheusMetrics(scheduler, registry=registry)  # the names are free again
    async with scheduler:
        await scheduler.add_job(jobfuncs.async_add, args=[1], id="x")
        await wait_idle(scheduler)
    assert runs(parse(again.render().decode())) == {("x", "success"): 1}


def test_a_sync_scheduler_is_measured_through_its_async_scheduler(clock: FakeClock) -> None:
    scheduler = Scheduler(clock=clock)
    metrics = PrometheusMetrics(scheduler)
    assert metrics.scheduler is scheduler.async_scheduler
    assert scheduler.async_scheduler._on_acquired is not None


async def test_mounted_in_fastapi(clock: FakeClock) -> None:
    fastapi = pytest.importorskip("fastapi")
    async with AsyncScheduler(clock=clock) as scheduler:
        metrics = PrometheusMetrics(scheduler)
        app = fastapi.FastAPI()
        app.mount("/metrics", metrics.asgi_app())
        await scheduler.add_job(jobfuncs.async_add, args=[1], id="x")
        await wait_idle(scheduler)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://app", follow_redirects=True
        ) as client:
            response = await client.get("/metrics")
    assert response.status_code == 200
    assert runs(parse(response.text)) == {("x", "success"): 1}
