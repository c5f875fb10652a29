"""Prometheus metrics for a scheduler: runs by outcome, lateness, durations, store health.

Install the extra (``pip install "horae[metrics]"``, which brings ``prometheus-client``),
attach a :class:`PrometheusMetrics` to a scheduler, and serve its registry at
``/metrics``::

    from fastapi import FastAPI
    from horae import AsyncScheduler
    from horae.metrics import PrometheusMetrics

    scheduler = AsyncScheduler()
    metrics = PrometheusMetrics(scheduler)
    app = FastAPI()
    app.mount("/metrics", metrics.asgi_app())

Metrics are opt-in and cost nothing when off: without a :class:`PrometheusMetrics`, the
scheduler registers no listener for them, builds no event for them (it builds an event
only when someone listens for its kind), and its loop pays one ``is None`` check per
store acquisition. This module is not imported by ``import horae``.

The metrics (with the default ``namespace="horae"``):

| name | type | what |
|---|---|---|
| ``horae_runs_total`` | counter | runs ended, by ``job_id`` and ``outcome`` |
| ``horae_run_lateness_seconds`` | histogram | how late runs started (start minus fire time) |
| ``horae_run_duration_seconds`` | histogram | how long runs took, by ``job_id`` |
| ``horae_acquire_batch_size`` | histogram | jobs leased per store acquisition |
| ``horae_store_errors_total`` | counter | store outages (the first failed call of each) |
| ``horae_store_up`` | gauge | 0 during a store outage, else 1 |
| ``horae_runs_in_progress`` | gauge | runs started here and not ended |
| ``horae_run_leases_held`` | gauge | runs whose store leases this scheduler renews |

See ``docs/metrics.md`` for what each counts exactly.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.asgi import make_asgi_app
    from prometheus_client.exposition import generate_latest
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "horae.metrics needs prometheus-client; install it with: pip install 'horae[metrics]'"
    ) from exc

from horae.errors import HoraeError
from horae.events import (
    EVENT_JOB_ABANDONED,
    EVENT_JOB_CANCELLED,
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    EVENT_JOB_TIMEOUT,
    EVENT_STORE_ERROR,
    Event,
    JobAbandoned,
    JobCancelled,
    JobError,
    JobExecuted,
    JobMissed,
    JobSkipped,
    JobSubmitted,
    JobTimedOut,
    RunEvent,
    StoreFailed,
)
from horae.jobs import RunOutcome

if TYPE_CHECKING:
    from horae.scheduler import AsyncScheduler
    from horae.sync import Scheduler

__all__ = ["ASGIApp", "PrometheusMetrics"]

#: An ASGI application (what Starlette's and FastAPI's ``mount()`` take).
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[MutableMapping[str, Any]]],
        Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ],
    Awaitable[None],
]

_OUTCOMES: dict[type[RunEvent], str] = {
    JobExecuted: RunOutcome.SUCCESS.value,
    JobError: RunOutcome.ERROR.value,
    JobTimedOut: RunOutcome.TIMEOUT.value,
    JobMissed: RunOutcome.MISSED.value,
    JobSkipped: RunOutcome.SKIPPED.value,
    JobAbandoned: RunOutcome.ABANDONED.value,
    JobCancelled: RunOutcome.CANCELLED.value,
}

_MASK = (
    EVENT_JOB_SUBMITTED
    | EVENT_JOB_EXECUTED
    | EVENT_JOB_ERROR
    | EVENT_JOB_TIMEOUT
    | EVENT_JOB_MISSED
    | EVENT_JOB_MAX_INSTANCES
    | EVENT_JOB_ABANDONED
    | EVENT_JOB_CANCELLED
    | EVENT_STORE_ERROR
)

#: Seconds: from "on time" to "a scheduler was down for an hour".
_LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
#: Seconds: from a coroutine that returns at once to a nightly batch of hours.
_DURATION_BUCKETS = (
    0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
)  # fmt: skip
#: Jobs per acquisition; 250 is AsyncScheduler's default ``batch_size``.
_BATCH_BUCKETS = (0.0, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)

#: The ids AsyncScheduler.run_job() gives its one-off jobs: a new one per call, so they
#: share one label value (``job_id="run_job"``) rather than make a series each.
_RUN_JOB_ID = re.compile(r"run_job-[0-9a-f]{32}")

#: Runs whose start is remembered to time their end; beyond it, the oldest are forgotten
#: (and not timed). Only runs whose end event never comes here stay (a run another
#: scheduler took over and ended), so this bounds memory rather than limits use.
_TRACKED_LIMIT = 50_000


class PrometheusMetrics:
    """Prometheus counters, histograms and gauges for one scheduler.

    Attach it before or after the scheduler starts; it counts from then on. It listens
    for the scheduler's run and store events (those of runs in this process: events
    other schedulers share through the store are left to their own metrics, so that a
    sum over processes counts each run once), and reads its gauges at scrape time.

    Example::

        scheduler = AsyncScheduler(store=SQLiteStore("jobs.db"))
        metrics = PrometheusMetrics(scheduler)
        app.mount("/metrics", metrics.asgi_app())      # FastAPI / Starlette
        # or, anywhere else: body = metrics.render()

    Args:
        scheduler: an :class:`~horae.AsyncScheduler`, or a sync
            :class:`~horae.Scheduler` (its async scheduler is used).
        registry: where the metrics are registered; a new ``CollectorRegistry`` by
            default, so that two schedulers in one process never clash. Pass
            ``prometheus_client.REGISTRY`` to export them with the process's other
            metrics (``prometheus_client.start_http_server()`` serves that one).
        namespace: the prefix of every metric name.
        per_job: label runs and durations with ``job_id``. Turn it off for stores of
            very many jobs: each job id makes series of its own.

    Attributes:
        scheduler: the :class:`~horae.AsyncScheduler` measured.
        registry: the registry holding the metrics.
        per_job: whether runs and durations have a ``job_id`` label.

    Raises:
        HoraeError: the scheduler has a :class:`PrometheusMetrics` already.
    """

    def __init__(
        self,
        scheduler: AsyncScheduler | Scheduler,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "horae",
        per_job: bool = True,
    ) -> None:
        from horae.sync import Scheduler

        target = scheduler.async_scheduler if isinstance(scheduler, Scheduler) else scheduler
        if target._on_acquired is not None:
            raise HoraeError(
                f"scheduler {target.id!r} has metrics attached already; one "
                "PrometheusMetrics per scheduler (close() the other one first)"
            )
        self.scheduler = target
        self.registry = registry if registry is not None else CollectorRegistry()
        self.per_job = bool(per_job)
        job = ("job_id",) if self.per_job else ()
        reg = self.registry
        self._runs = Counter(
            "runs",
            "Runs ended, by outcome (each attempt of a retried fire time counts).",
            [*job, "outcome"],
            namespace=namespace,
            registry=reg,
        )
        self._lateness = Histogram(
            "run_lateness_seconds",
            "How late runs started: start minus fire time.",
            namespace=namespace,
            registry=reg,
            buckets=_LATENESS_BUCKETS,
        )
        self._duration = Histogram(
            "run_duration_seconds",
            "How long runs took, from their start to their end (whatever the outcome).",
            job,
            namespace=namespace,
            registry=reg,
            buckets=_DURATION_BUCKETS,
        )
        self._batch = Histogram(
            "acquire_batch_size",
            "Jobs leased per store acquisition (0: the scheduler looked and found none due).",
            namespace=namespace,
            registry=reg,
            buckets=_BATCH_BUCKETS,
        )
        self._store_errors = Counter(
            "store_errors",
            "Store outages: the first failed store call of each.",
            namespace=namespace,
            registry=reg,
        )
        store_up = Gauge(
            "store_up", "0 while the store fails, else 1.", namespace=namespace, registry=reg
        )
        store_up.set_function(lambda: 0.0 if target._store_down_since is not None else 1.0)
        in_progress = Gauge(
            "runs_in_progress",
            "Runs started here and not ended (including those waiting for a retry).",
            namespace=namespace,
            registry=reg,
        )
        in_progress.set_function(lambda: float(target._in_flight))
        leases = Gauge(
            "run_leases_held",
            "Runs whose store leases this scheduler renews.",
            namespace=namespace,
            registry=reg,
        )
        leases.set_function(lambda: float(len(target._live_runs)))
        # Kept to tell, in close(), that the scheduler's hook is still this one's.
        self._observe_batch = self._batch.observe
        self._collectors = (
            self._runs,
            self._lateness,
            self._duration,
            self._batch,
            self._store_errors,
            store_up,
            in_progress,
            leases,
        )
        if not self.per_job:
            # Every outcome shows from the first scrape, at 0 (with job ids, the label
            # values are not known in advance).
            for outcome in _OUTCOMES.values():
                self._runs.labels(outcome=outcome)
        # Run id -> when the run started (its JobSubmitted), until its end event.
        self._started: dict[UUID, datetime] = {}
        target._on_acquired = self._observe_batch
        target.add_listener(self._on_event, _MASK)

    def close(self) -> None:
        """Detach from the scheduler and unregister the metrics from the registry."""
        scheduler = self.scheduler
        if scheduler._on_acquired is self._observe_batch:
            scheduler._on_acquired = None
            scheduler.remove_listener(self._on_event)
            for collector in self._collectors:
                self.registry.unregister(collector)
        self._started.clear()

    def render(self) -> bytes:
        """The registry's metrics in Prometheus' text exposition format."""
        return generate_latest(self.registry)

    def asgi_app(self) -> ASGIApp:
        """An ASGI app serving the registry, to mount in FastAPI or Starlette.

        Example::

            app.mount("/metrics", metrics.asgi_app())
        """
        app: ASGIApp = make_asgi_app(self.registry)
        return app

    def _on_event(self, event: Event) -> None:
        # A sync listener: called in the task that publishes, for every run; keep it short.
        if event.origin != self.scheduler.id:
            return  # a run of another scheduler, which counts it in its own metrics
        if isinstance(event, JobSubmitted):
            self._lateness.observe(_seconds(event.timestamp, event.scheduled_time))
            started = self._started
            if len(started) >= _TRACKED_LIMIT:
                del started[next(iter(started))]
            started[event.run_id] = event.timestamp
            return
        if isinstance(event, StoreFailed):
            self._store_errors.inc()
            return
        if not isinstance(event, RunEvent):
            return
        outcome = _OUTCOMES.get(type(event))
        if outcome is None:
            return
        started_at = self._started.pop(event.run_id, None)
        if not self.per_job:
            self._runs.labels(outcome).inc()
            if started_at is not None:
                self._duration.observe(_seconds(event.timestamp, started_at))
            return
        job_id = event.job_id
        if job_id.startswith("run_job-") and _RUN_JOB_ID.fullmatch(job_id):
            job_id = "run_job"
        self._runs.labels(job_id, outcome).inc()
        if started_at is not None:
            self._duration.labels(job_id).observe(_seconds(event.timestamp, started_at))


def _seconds(end: datetime, start: datetime) -> float:
    return max(0.0, (end - start).total_seconds())
