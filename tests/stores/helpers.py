"""Jobs and instants the store tests share."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import attrs

from horae import IntervalTrigger, Job
from horae.stores.base import SchedulerInfo

from .. import jobfuncs

T0 = datetime(2027, 1, 1, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    """``seconds`` after T0."""
    return T0 + timedelta(seconds=seconds)


def make_job(job_id: str, next_run: float | None, **options: object) -> Job:
    """A storable every-10-seconds job due ``next_run`` seconds after T0 (None: paused)."""
    return Job(
        id=job_id,
        func=jobfuncs.async_add,
        func_ref="tests.jobfuncs:async_add",
        trigger=IntervalTrigger(seconds=10, start_date=T0, timezone="UTC"),
        args=(1, 2),
        next_run_time=None if next_run is None else at(next_run),
        **options,  # type: ignore[arg-type]
    )


def scheduler_info(
    scheduler_id: str, beat: float, *, ttl: float = 30, **changes: object
) -> SchedulerInfo:
    """A scheduler's record as its heartbeat ``beat`` seconds after T0 writes it, valid
    for ``ttl`` seconds (``changes``: other fields)."""
    info = SchedulerInfo(
        id=scheduler_id,
        host="worker-1.example",
        pid=4242,
        started_at=at(0),
        heartbeat_at=at(beat),
        expires_at=at(beat + ttl),
        state="running",
        version="1.2.3",
    )
    return attrs.evolve(info, **changes)  # type: ignore[arg-type]
