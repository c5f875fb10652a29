"""OpenTelemetry spans for job runs: opt-in, and free when off.

:func:`enable_tracing` makes a scheduler run each call of a job (every attempt) inside a
span named ``horae.run <job id>``, with the run's identity and outcome as attributes.
While the job runs, its span is the current span: ``opentelemetry.trace.
get_current_span()`` returns it, and the spans of instrumented libraries the job calls
(HTTP clients, database drivers) nest under it. :func:`traceparent` gives the span's W3C
``traceparent`` header, to hand on by hand; in a process executor's worker, where no
span object exists, the run's span is the remote parent of what the job traces.

A run of the scheduling loop starts a trace of its own (a root span), whatever was
current when the scheduler started; a run that a caller awaits (``run_job()``,
``backfill()``) is a child of the caller's current span.

The span kind is ``INTERNAL``: the scheduler's own timer starts a run, not a request or
a message from another traced component (``SERVER`` and ``CONSUMER`` would claim a
remote parent that does not exist).

Span times come from the scheduler's clock (``SystemClock`` in production), so they match
the run's ``started_at`` and ``finished_at``, and tests on a ``FakeClock`` see fake times.

This module needs the OpenTelemetry API (``pip install 'horae[otel]'``); horae imports it
only when this module is imported. Spans go wherever the tracer provider sends them
(the global one, set with ``opentelemetry.trace.set_tracer_provider``, by default).

Example::

    from horae import AsyncScheduler
    from horae.tracing import enable_tracing

    scheduler = AsyncScheduler()
    enable_tracing(scheduler)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import anyio

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "horae.tracing needs the OpenTelemetry API; install it with "
        "pip install 'horae[otel]' (or opentelemetry-api)"
    ) from exc

from horae._execution import Origin, _run_traceparent, call_job, in_job
from horae._running import horae_version
from horae.errors import HoraeError
from horae.executors.base import Executor
from horae.jobs import Job, Run, RunOutcome

if TYPE_CHECKING:
    from horae.scheduler import AsyncScheduler
    from horae.sync import Scheduler

__all__ = ["disable_tracing", "enable_tracing", "traceparent"]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_FAILED = frozenset({RunOutcome.ERROR, RunOutcome.TIMEOUT})
# A run of the scheduling loop starts a trace of its own: the loop's task inherited the
# context of whoever started the scheduler, and runs days later are not part of that.
_ROOT = otel_context.Context()


def enable_tracing(
    scheduler: AsyncScheduler | Scheduler,
    *,
    tracer_provider: trace.TracerProvider | None = None,
) -> None:
    """Run every call of a job by ``scheduler`` inside an OpenTelemetry span.

    Each attempt of each run is one span, ``horae.run <job id>`` (``horae.run <job
    name>`` for ``run_job()``, whose job ids are made up), of kind ``INTERNAL``, with
    these attributes:

    - ``horae.job.id``, ``horae.job.name``, ``horae.executor``, ``horae.scheduler.id``
    - ``horae.run.id`` (this attempt), ``horae.run.key`` (the fire time, the same for
      every attempt), ``horae.run.attempt``, ``horae.run.scheduled_time`` (ISO 8601),
      ``horae.run.lateness_s`` (seconds from the fire time to the start),
      ``horae.run.origin`` (``scheduled``, ``run_job`` or ``backfill``)
    - at the end, ``horae.run.outcome`` (``success``, ``error``, ``timeout``, or
      ``cancelled`` when the call was cancelled)

    A run that ends ``error`` or ``timeout`` sets the span's status to ``ERROR`` and
    records the exception as a span event. Calling it again replaces the tracer; it may
    be called before or after the scheduler starts.

    Example::

        from opentelemetry.sdk.trace import TracerProvider

        scheduler = AsyncScheduler()
        enable_tracing(scheduler, tracer_provider=TracerProvider())

    Args:
        scheduler: an :class:`~horae.AsyncScheduler` or a :class:`~horae.Scheduler`.
        tracer_provider: where the spans go; the global tracer provider by default
            (``opentelemetry.trace.set_tracer_provider``, which may also be set later).
    """
    tracer = trace.get_tracer("horae", horae_version() or None, tracer_provider=tracer_provider)
    _async_scheduler(scheduler)._run_hook = _TracedCall(tracer)


def disable_tracing(scheduler: AsyncScheduler | Scheduler) -> None:
    """Stop tracing ``scheduler``'s runs (runs going on keep their spans)."""
    _async_scheduler(scheduler)._run_hook = None


def traceparent() -> str | None:
    """The W3C ``traceparent`` header of the running job's span (``None`` if untraced).

    Inside a traced run, in any executor (a process executor's worker included), this is
    the span of the run, not of a span the job started itself. Hand it on where
    OpenTelemetry's own propagation does not reach: a message to another system, a
    subprocess's environment.

    Example::

        def export() -> None:
            subprocess.run(["exporter"], env={**os.environ, "TRACEPARENT": traceparent() or ""})

    Raises:
        HoraeError: called outside a running job.
    """
    if not in_job():
        raise HoraeError("traceparent() was called outside a running job; call it from the job")
    return _run_traceparent.get()


class _TracedCall:
    """The run hook of a traced scheduler: :func:`call_job` inside a span."""

    __slots__ = ("_tracer",)

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    async def __call__(
        self,
        job: Job,
        run: Run,
        executor: Executor,
        now: Callable[[], datetime],
        origin: Origin,
    ) -> tuple[Run, BaseException | None]:
        started = now()
        label = job.name if origin == "run_job" else job.id
        span = self._tracer.start_span(
            f"horae.run {label}",
            context=_ROOT if origin == "scheduled" else None,
            kind=trace.SpanKind.INTERNAL,
            attributes={
                "horae.job.id": job.id,
                "horae.job.name": job.name,
                "horae.run.id": str(run.id),
                "horae.run.key": str(run.key),
                "horae.run.attempt": run.attempt,
                "horae.run.scheduled_time": run.scheduled_time.isoformat(),
                "horae.run.lateness_s": (started - run.scheduled_time).total_seconds(),
                "horae.run.origin": origin,
                "horae.executor": job.executor,
                "horae.scheduler.id": run.scheduler_id,
            },
            start_time=_nanoseconds(started),
        )
        context = span.get_span_context()
        header = (
            f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
            if context.is_valid
            else None
        )
        # Current in this task, and so in the job: an async job runs in it, and a thread
        # job gets a copy of its context variables.
        token = otel_context.attach(trace.set_span_in_context(span))
        header_token = _run_traceparent.set(header)
        ended_at: datetime | None = None
        try:
            finished, exc = await call_job(job, run, executor, now)
            ended_at = finished.finished_at or now()
            outcome = finished.outcome
            assert outcome is not None
            span.set_attribute("horae.run.outcome", outcome.value)
            if outcome in _FAILED and exc is not None:
                span.record_exception(exc, timestamp=_nanoseconds(ended_at))
                span.set_status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {exc}")
            return finished, exc
        except anyio.get_cancelled_exc_class():
            # A newer fire time (overlap="cancel_other") or a shutdown that does not wait.
            span.set_attribute("horae.run.outcome", RunOutcome.CANCELLED.value)
            span.set_status(trace.StatusCode.ERROR, "cancelled before it ended")
            raise
        except BaseException as error:
            # Not a job's exception (call_job catches those): one that stops the process.
            span.record_exception(error)
            span.set_status(trace.StatusCode.ERROR, f"{type(error).__name__}: {error}")
            raise
        finally:
            _run_traceparent.reset(header_token)
            otel_context.detach(token)
            span.end(end_time=_nanoseconds(ended_at if ended_at is not None else now()))


@contextlib.contextmanager
def _remote_parent(header: str) -> Iterator[None]:
    """Make the span a ``traceparent`` names the current (remote) span, for a while."""
    parent = TraceContextTextMapPropagator().extract({"traceparent": header})
    token = otel_context.attach(parent)
    try:
        yield
    finally:
        otel_context.detach(token)


def _async_scheduler(scheduler: AsyncScheduler | Scheduler) -> AsyncScheduler:
    from horae.scheduler import AsyncScheduler
    from horae.sync import Scheduler

    if isinstance(scheduler, Scheduler):
        return scheduler.async_scheduler
    if isinstance(scheduler, AsyncScheduler):
        return scheduler
    raise TypeError(
        f"scheduler: {scheduler!r} is not a scheduler; give an AsyncScheduler or a Scheduler"
    )


def _nanoseconds(instant: datetime) -> int:
    """``instant`` in nanoseconds since the epoch, as OpenTelemetry counts time (exactly:
    a float of seconds would lose the microseconds)."""
    return (instant - _EPOCH) // _MICROSECOND * 1000
