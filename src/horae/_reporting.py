"""The events and log lines that tell what happened to each fire time."""

from __future__ import annotations

import logging
import traceback
import uuid
from datetime import datetime
from typing import Any

from horae.events import (
    EVENT_JOB_ERROR,
    EventHub,
    JobAbandoned,
    JobCancelled,
    JobError,
    JobExecuted,
    JobMissed,
    JobSkipped,
    JobSubmitted,
    JobTimedOut,
    RunEvent,
)
from horae.jobs import Job, Run, RunOutcome
from horae.stores.base import Lease

logger = logging.getLogger("horae.scheduler")

# Each function builds its event only when someone listens for it: these run for every
# fire time.


def _publish(
    hub: EventHub, cls: type[RunEvent], run: Run, timestamp: datetime, **fields: Any
) -> None:
    if hub.wanted & cls.code:
        hub.publish(
            cls(
                timestamp=timestamp,
                origin=hub.origin,
                job_id=run.job_id,
                run_id=run.id,
                scheduled_time=run.scheduled_time,
                **fields,
            )
        )


def submitted(hub: EventHub, run: Run, now: datetime) -> None:
    """A run was handed to its executor."""
    _publish(hub, JobSubmitted, run, now, coalesced=run.coalesced)


def not_run(hub: EventHub, run: Run) -> None:
    """A fire time ended without running: missed or skipped."""
    timestamp = run.finished_at or run.scheduled_time
    if run.outcome is RunOutcome.MISSED:
        logger.warning(
            "job %r missed its fire time %s (misfire_grace_time exceeded)",
            run.job_id,
            run.scheduled_time,
        )
        _publish(hub, JobMissed, run, timestamp, coalesced=run.coalesced)
        return
    logger.warning(
        "job %r skipped its fire time %s: max_instances runs are in progress (overlap policy)",
        run.job_id,
        run.scheduled_time,
    )
    _publish(hub, JobSkipped, run, timestamp)


def finished(
    hub: EventHub,
    job: Job,
    run: Run,
    exc: BaseException | None,
    retry_at: datetime | None = None,
) -> None:
    """A run ended: succeeded, raised or timed out (and is retried at ``retry_at``)."""
    timestamp = run.finished_at or run.scheduled_time
    if run.outcome is RunOutcome.SUCCESS:
        logger.info("job %r: the run for %s succeeded", job.id, run.scheduled_time)
        _publish(hub, JobExecuted, run, timestamp, result=run.result)
        return
    if retry_at is not None and job.retry is not None:
        then = f"; attempt {run.attempt + 1} of {job.retry.attempts} at {retry_at}"
    elif run.attempt > 1:
        then = f" (attempt {run.attempt}, the last)"
    else:
        then = ""
    if run.outcome is RunOutcome.TIMEOUT:
        logger.error("job %r: the run for %s timed out%s", job.id, run.scheduled_time, then)
        _publish(hub, JobTimedOut, run, timestamp)
    else:
        logger.error(
            "job %r: the run for %s raised%s", job.id, run.scheduled_time, then, exc_info=exc
        )
        _publish(hub, JobError, run, timestamp, exception=exc, traceback=run.error or "")


def abandoned(hub: EventHub, run: Run, reason: str) -> None:
    """A run was given up: its scheduler stopped without waiting for it, or died."""
    logger.warning(
        "job %r: the run for %s was abandoned: %s", run.job_id, run.scheduled_time, reason
    )
    _publish(hub, JobAbandoned, run, run.finished_at or run.scheduled_time, reason=reason)


def cancelled(hub: EventHub, run: Run, reason: str) -> None:
    """A run was cancelled by a newer fire time of its job (``cancel_other``)."""
    logger.warning(
        "job %r: the run for %s was cancelled: %s", run.job_id, run.scheduled_time, reason
    )
    _publish(hub, JobCancelled, run, run.finished_at or run.scheduled_time, reason=reason)


def job_failed(
    hub: EventHub, lease: Lease, exc: BaseException, now: datetime, retry_at: datetime
) -> None:
    """A leased job could not be planned: its trigger raised, or it could not be read."""
    what = "its trigger failed" if lease.job is not None else "it could not be read"
    logger.error(
        "job %r: %s; it stays stored and is tried again at %s",
        lease.job_id,
        what,
        retry_at,
        exc_info=exc,
    )
    if hub.wanted & EVENT_JOB_ERROR:
        scheduled = lease.job.next_run_time if lease.job is not None else None
        hub.publish(
            JobError(
                timestamp=now,
                origin=hub.origin,
                job_id=lease.job_id,
                run_id=uuid.uuid4(),
                scheduled_time=scheduled or now,
                exception=exc,
                traceback="".join(traceback.format_exception(exc)),
            )
        )
