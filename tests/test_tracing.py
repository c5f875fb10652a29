"""horae.tracing: a span per run on the SDK's in-memory exporter, on the fake clock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta

import anyio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from horae import AsyncScheduler, HoraeError, Retry, Scheduler, current_run
from horae.testing import FakeClock, wait_idle
from horae.tracing import disable_tracing, enable_tracing, traceparent

from . import tracingfuncs
from .conftest import START

pytestmark = pytest.mark.anyio

T0 = datetime.fromisoformat(START)
T0_NS = int(T0.timestamp()) * 10**9


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def _spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("horae.run ")]


def _header(span: ReadableSpan) -> str:
    context = span.get_span_context()
    assert context is not None
    # Sampled (01); the SDK also sets W3C level 2's random-trace-id flag (02).
    assert context.trace_flags.sampled
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


async def test_a_successful_run_is_one_root_span_with_the_run_attributes(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    seen: dict[str, object] = {}

    async def job() -> int:
        seen["span"] = trace.get_current_span()
        seen["traceparent"] = traceparent()
        seen["run"] = current_run()
        await clock.sleep(2)
        return 1

    scheduler = AsyncScheduler(clock=clock, timezone="UTC", scheduler_id="s1")
    enable_tracing(scheduler, tracer_provider=provider)
    # A span current when the scheduler starts is not the parent of its runs.
    with provider.get_tracer("test").start_as_current_span("startup"):
        async with scheduler:
            run_date = T0 + timedelta(seconds=5)
            await scheduler.add_job(job, "date", run_date=run_date, id="j", name="report")
            await wait_idle(scheduler)
            clock.advance(7)  # the run starts 2 s late, and takes 2 s
            await anyio.wait_all_tasks_blocked()  # (a run going on is not idle)
            clock.advance(2)
            await wait_idle(scheduler)
    (span,) = _spans(exporter)
    run = seen["run"]
    assert span.name == "horae.run j"
    assert span.kind is SpanKind.INTERNAL
    assert span.parent is None
    assert span.status.status_code is StatusCode.UNSET
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "horae"
    assert dict(span.attributes or {}) == {
        "horae.job.id": "j",
        "horae.job.name": "report",
        "horae.run.id": str(run.id),  # type: ignore[attr-defined]
        "horae.run.key": str(run.key),  # type: ignore[attr-defined]
        "horae.run.attempt": 1,
        "horae.run.scheduled_time": "2027-01-01T00:00:05+00:00",
        "horae.run.lateness_s": 2.0,
        "horae.run.origin": "scheduled",
        "horae.executor": "async",
        "horae.scheduler.id": "s1",
        "horae.run.outcome": "success",
    }
    # The scheduler's clock: the times of the run record.
    assert span.start_time == T0_NS + 7 * 10**9
    assert span.end_time == T0_NS + 9 * 10**9
    assert seen["span"].get_span_context() == span.get_span_context()  # type: ignore[attr-defined]
    assert seen["traceparent"] == _header(span)


async def test_a_failing_run_is_an_error_span_with_the_exception(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def broken() -> None:
        raise ValueError("no luck")

    async with AsyncScheduler(clock=clock) as scheduler:
        enable_tracing(scheduler, tracer_provider=provider)
        await scheduler.add_job(broken, id="b")
        await wait_idle(scheduler)
    (span,) = _spans(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "ValueError: no luck"
    assert (span.attributes or {})["horae.run.outcome"] == "error"
    (event,) = span.events
    assert event.name == "exception"
    attributes = dict(event.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert attributes["exception.message"] == "no luck"
    assert "raise ValueError" in str(attributes["exception.stacktrace"])


async def test_each_attempt_of_a_retried_run_is_a_span_with_the_same_key(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def flaky() -> None:
        if current_run().attempt == 1:
            raise OSError("down")

    async with AsyncScheduler(clock=clock) as scheduler:
        enable_tracing(scheduler, tracer_provider=provider)
        await scheduler.add_job(flaky, id="f", retry=Retry(attempts=2, backoff=10, jitter=0))
        await wait_idle(scheduler)
        clock.advance(10)
        await wait_idle(scheduler)
    first, second = (dict(s.attributes or {}) for s in _spans(exporter))
    assert (first["horae.run.attempt"], first["horae.run.outcome"]) == (1, "error")
    assert (second["horae.run.attempt"], second["horae.run.outcome"]) == (2, "success")
    assert first["horae.run.key"] == second["horae.run.key"]
    assert first["horae.run.id"] != second["horae.run.id"]
    assert second["horae.run.lateness_s"] == 10.0


async def test_a_thread_job_sees_its_span_and_its_child_spans_nest(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    seen: dict[str, object] = {}

    def in_thread() -> None:
        seen["span"] = trace.get_current_span()
        seen["traceparent"] = traceparent()
        with provider.get_tracer("app").start_as_current_span("query"):
            pass

    async with AsyncScheduler(clock=clock) as scheduler:
        enable_tracing(scheduler, tracer_provider=provider)
        await scheduler.add_job(in_thread, id="t")
        with anyio.fail_after(5):
            await wait_idle(scheduler)
    (span,) = _spans(exporter)
    (child,) = [s for s in exporter.get_finished_spans() if s.name == "query"]
    assert (span.attributes or {})["horae.executor"] == "thread"
    assert seen["span"].get_span_context() == span.get_span_context()  # type: ignore[attr-defined]
    assert seen["traceparent"] == _header(span)
    assert child.parent == span.get_span_context()


async def test_an_async_job_child_span_nests_under_the_run(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def fetch() -> None:
        with provider.get_tracer("app").start_as_current_span("GET /feed"):
            await clock.sleep(1)

    async with AsyncScheduler(clock=clock) as scheduler:
        enable_tracing(scheduler, tracer_provider=provider)
        await scheduler.add_job(fetch, id="a")
        await anyio.wait_all_tasks_blocked()
        clock.advance(1)
        await wait_idle(scheduler)
    (span,) = _spans(exporter)
    (child,) = [s for s in exporter.get_finished_spans() if s.name == "GET /feed"]
    assert child.parent == span.get_span_context()
    assert child.context is not None
    assert span.context is not None
    assert child.context.trace_id == span.context.trace_id


async def test_a_timeout_is_an_error_span(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def hang() -> None:
        await anyio.sleep_forever()

    async with AsyncScheduler(clock=clock) as scheduler:
        enable_tracing(scheduler, tracer_provider=provider)
        await scheduler.add_job(hang, id="h", timeout=0.01)
        with anyio.fail_after(5):
            await wait_idle(scheduler)
    (span,) = _spans(exporter)
    assert (span.attributes or {})["horae.run.outcome"] == "timeout"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description is not None
    assert span.status.description.startswith("TimeoutError: job 'h' ran longer")
    assert [e.name for e in span.events] == ["exception"]


async def test_a_cancelled_call_is_an_error_span(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def endless() -> None:
        await clock.sleep(3600)

    async with AsyncScheduler(clock=clock) as scheduler:
        enable_tracing(scheduler, tracer_provider=provider)
        await scheduler.add_job(endless, "interval", seconds=10, id="c", overlap="cancel_other")
        clock.advance(10)
        await anyio.wait_all_tasks_blocked()
        clock.advance(10)  # the next fire time cancels the first run
        await anyio.wait_all_tasks_blocked()
        (span,) = _spans(exporter)
        await scheduler.shutdown(wait=False)
    assert (span.attributes or {})["horae.run.outcome"] == "cancelled"
    assert span.status.status_code is StatusCode.ERROR
    assert span.events == ()


async def test_run_job_and_backfill_spans_are_children_of_the_caller(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async def work() -> str | None:
        return traceparent()

    async with AsyncScheduler(clock=clock, timezone="UTC") as scheduler:
        enable_tracing(scheduler, tracer_provider=provider)
        await scheduler.add_job(work, "interval", seconds=60, id="w", next_run_time=None)
        clock.advance(150)
        with provider.get_tracer("test").start_as_current_span("request") as request:
            header = await scheduler.run_job(work)
            runs = await scheduler.backfill("w", T0, T0 + timedelta(seconds=150))
    spans = _spans(exporter)
    # run_job() makes up a job id: the span is named after the function.
    assert [s.name for s in spans] == [f"horae.run {work.__qualname__}", *["horae.run w"] * 2]
    assert [(s.attributes or {})["horae.run.origin"] for s in spans] == [
        "run_job",
        "backfill",
        "backfill",
    ]
    assert all(s.parent == request.get_span_context() for s in spans)
    assert header == _header(spans[0])
    assert [r.result for r in runs] == [_header(s) for s in spans[1:]]


async def test_a_process_job_gets_the_run_span_as_its_remote_parent(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with AsyncScheduler(clock=clock) as scheduler:
        enable_tracing(scheduler, tracer_provider=provider)
        with anyio.fail_after(30):
            seen = await scheduler.run_job(tracingfuncs.trace_seen, executor="process")
    (span,) = _spans(exporter)
    context = span.get_span_context()
    assert context is not None
    assert seen == {
        "traceparent": _header(span),
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "remote": "True",
    }


async def test_tracing_off_makes_no_spans_and_takes_the_plain_path(
    clock: FakeClock, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    seen: list[str | None] = []

    async def job() -> None:
        seen.append(traceparent())

    async with AsyncScheduler(clock=clock) as scheduler:
        assert scheduler._run_hook is None  # call_job directly: one attribute read per run
        await scheduler.add_job(job, id="off")
        await wait_idle(scheduler)
        enable_tracing(scheduler, tracer_provider=provider)
        disable_tracing(scheduler)
        assert scheduler._run_hook is None
        await scheduler.run_job(job)
    assert seen == [None, None]
    assert exporter.get_finished_spans() == ()
    with pytest.raises(HoraeError, match="outside a running job"):
        traceparent()


def test_horae_imports_no_opentelemetry_until_tracing_is_enabled() -> None:
    code = "import sys, horae; sys.exit('opentelemetry' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_sync_facade_is_traced_through_its_async_scheduler(provider: TracerProvider) -> None:
    scheduler = Scheduler()
    enable_tracing(scheduler, tracer_provider=provider)
    assert scheduler.async_scheduler._run_hook is not None
    with pytest.raises(TypeError, match="give an AsyncScheduler or a Scheduler"):
        enable_tracing(object())  # type: ignore[arg-type]
