"""Calling a job's callable for one run, and the ``current_run()`` it can read."""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import datetime
from typing import Any, Literal

import anyio

from horae.errors import HoraeError
from horae.executors.base import Executor
from horae.jobs import Job, Run, RunOutcome

_current_run: ContextVar[Run] = ContextVar("horae_current_run")
#: The W3C ``traceparent`` of the running job's span, while its run is traced
#: (``horae.tracing``); the process executor carries it to its workers.
_run_traceparent: ContextVar[str | None] = ContextVar("horae_run_traceparent", default=None)

#: Who asked for a run: the scheduling loop, ``run_job()`` or ``backfill()``.
Origin = Literal["scheduled", "run_job", "backfill"]

#: What a scheduler calls in place of :func:`call_job` when something wraps every run's
#: call (``horae.tracing``): ``hook(job, run, executor, now, origin)``, which calls
#: :func:`call_job` itself. ``None`` on the scheduler (the default) costs one attribute
#: read per run.
RunHook = Callable[
    [Job, Run, Executor, Callable[[], datetime], Origin],
    Awaitable[tuple[Run, BaseException | None]],
]


def current_run() -> Run:
    """The :class:`Run` of the job that is running in this task or thread.

    Example::

        async def job() -> None:
            run = current_run()
            print(run.job_id, run.scheduled_time, run.attempt)

    Raises:
        HoraeError: called outside a running job.
    """
    try:
        return _current_run.get()
    except LookupError:
        raise HoraeError(
            "current_run() was called outside a running job; call it from the job's code"
        ) from None


def in_job() -> bool:
    """Whether the calling task or thread is running a job."""
    return _current_run.get(None) is not None


def ended(
    run: Run,
    *,
    started_at: datetime | None,
    finished_at: datetime,
    outcome: RunOutcome,
    result: Any = None,
    error: str | None = None,
) -> Run:
    """``run`` as it ended (built directly: this is on every run's path)."""
    return Run(
        id=run.id,
        job_id=run.job_id,
        scheduled_time=run.scheduled_time,
        started_at=started_at,
        finished_at=finished_at,
        outcome=outcome,
        result=result,
        error=error,
        scheduler_id=run.scheduler_id,
        attempt=run.attempt,
        coalesced=run.coalesced,
    )


async def call_job(
    job: Job, run: Run, executor: Executor, now: Callable[[], datetime]
) -> tuple[Run, BaseException | None]:
    """Run the callable; return the finished Run and the exception it raised, if any.

    Cancellation (a shutdown without waiting) propagates; everything else is caught.
    """
    started_at = now()
    # current_run() gives the run as planned (id, job, fire time, attempt, scheduler);
    # building a second Run with started_at would cost more than many jobs do.
    token = _current_run.set(run)
    exc: BaseException | None = None
    result: Any = None
    outcome = RunOutcome.SUCCESS
    error: str | None = None
    try:
        if job.timeout is not None:
            with anyio.move_on_after(job.timeout.total_seconds()) as scope:
                result = await executor.run(job.func, job.args, job.kwargs)
            if scope.cancelled_caught:
                outcome = RunOutcome.TIMEOUT
                exc = TimeoutError(
                    f"job {job.id!r} ran longer than its timeout of "
                    f"{job.timeout.total_seconds():g} s"
                )
                error = str(exc)
        else:
            result = await executor.run(job.func, job.args, job.kwargs)
    except Exception as e:
        exc = e
        outcome = RunOutcome.ERROR
        error = "".join(traceback.format_exception(e))
    finally:
        _current_run.reset(token)
    return (
        ended(
            run,
            started_at=started_at,
            finished_at=now(),
            outcome=outcome,
            result=result,
            error=error,
        ),
        exc,
    )
