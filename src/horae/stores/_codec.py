"""Jobs and runs as plain values that persistent stores write and read.

A stored job is its id, its next run time (a column or score of its own, for the due-job
index) and a *payload*: one JSON document with everything else. Callables are stored by
reference, triggers as their ``to_dict()``, args/kwargs/results with the store's
serializer. Encoding happens when the job is added, so what cannot be stored is refused
by the ``add_job`` call that tried.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import attrs

from horae.errors import (
    DeserializationError,
    InvalidCallableError,
    SerializationError,
)
from horae.jobs import Job, Retry, Run, RunOutcome
from horae.refs import callable_to_ref, ref_to_callable
from horae.serializers import Serializer
from horae.triggers.base import trigger_from_dict

#: Version of the payload layout; readers refuse layouts newer than they know.
PAYLOAD_VERSION = 1


def _instant(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def encode_job(job: Job, serializer: Serializer) -> str:
    """The JSON payload of ``job`` (all but its id and next run time).

    Raises:
        InvalidCallableError: the callable has no importable reference.
        SerializationError: an argument, the trigger or the metadata cannot be stored.
    """
    ref = job.func_ref or callable_to_ref(job.func)
    try:
        trigger = job.trigger.to_dict()
        json.dumps(trigger)
    except (TypeError, ValueError, AttributeError) as exc:
        raise SerializationError(f"trigger: {job.trigger!r} cannot be stored: {exc}") from exc
    try:
        metadata = json.dumps(dict(job.metadata))
    except (TypeError, ValueError) as exc:
        raise SerializationError(
            f"metadata: {job.metadata!r} is not plain JSON (str keys; str, number, bool, "
            f"None, list and dict values): {exc}"
        ) from exc
    payload = {
        "v": PAYLOAD_VERSION,
        "func": ref,
        "trigger": trigger,
        "args": serializer.dumps(list(job.args), "args"),
        "kwargs": serializer.dumps(dict(job.kwargs), "kwargs"),
        "name": job.name,
        "executor": job.executor,
        "coalesce": job.coalesce,
        "max_instances": job.max_instances,
        "misfire_grace_time": _seconds(job.misfire_grace_time),
        "jitter": _seconds(job.jitter),
        "timeout": _seconds(job.timeout),
        "retry": None if job.retry is None else _encode_retry(job.retry),
        "metadata": json.loads(metadata),
    }
    # Written only when not the default, so that a job that does not use them keeps
    # the payload an older horae of the same payload version reads the same way.
    if job.overlap != "skip":
        payload["overlap"] = job.overlap
    if job.on_crash is not None:
        payload["on_crash"] = job.on_crash
    if job.max_runs is not None:
        payload["max_runs"] = job.max_runs
    if job.pause_after_failures is not None:
        payload["pause_after_failures"] = job.pause_after_failures
    if job.pause_note is not None:
        payload["pause_note"] = job.pause_note
    if job.resumed_at is not None:
        payload["resumed_at"] = job.resumed_at.isoformat()
    return json.dumps(payload, separators=(",", ":"))


def _encode_retry(retry: Retry) -> dict[str, Any]:
    on = []
    for exc_type in retry.on:
        try:
            on.append(callable_to_ref(exc_type))
        except InvalidCallableError as exc:
            raise SerializationError(f"retry.on: {exc_type!r} cannot be stored: {exc}") from exc
    return {
        "attempts": retry.attempts,
        "backoff": retry.backoff.total_seconds(),
        "multiplier": retry.multiplier,
        "max_backoff": retry.max_backoff.total_seconds(),
        "jitter": retry.jitter,
        "on": on,
        "abandoned": retry.abandoned,
    }


def _decode_retry(data: dict[str, Any] | None) -> Retry | None:
    if data is None:
        return None
    return Retry(
        attempts=data["attempts"],
        backoff=data["backoff"],
        multiplier=data["multiplier"],
        max_backoff=data["max_backoff"],
        jitter=data["jitter"],
        on=tuple(ref_to_callable(ref) for ref in data["on"]),
        abandoned=data["abandoned"],
    )


def decode_job(
    job_id: str, next_run_time: datetime | None, payload: str | bytes, serializer: Serializer
) -> Job:
    """The job a payload describes.

    Raises:
        DeserializationError: the payload is corrupted, its callable no longer imports,
            its trigger kind is unknown, or its arguments cannot be read; the message
            names the job.
    """
    try:
        data = json.loads(payload)
        version = data.get("v")
        if version != PAYLOAD_VERSION:
            raise DeserializationError(
                f"payload version {version!r}; this horae reads version {PAYLOAD_VERSION}"
            )
        ref = data["func"]
        return Job(
            id=job_id,
            func=ref_to_callable(ref),
            func_ref=ref,
            trigger=trigger_from_dict(data["trigger"]),
            args=tuple(serializer.loads(data["args"])),
            kwargs=serializer.loads(data["kwargs"]),
            name=data["name"],
            executor=data["executor"],
            coalesce=data["coalesce"],
            max_instances=data["max_instances"],
            misfire_grace_time=data["misfire_grace_time"],
            jitter=data["jitter"],
            timeout=data["timeout"],
            retry=_decode_retry(data.get("retry")),
            overlap=data.get("overlap", "skip"),
            on_crash=data.get("on_crash"),
            max_runs=data.get("max_runs"),
            pause_after_failures=data.get("pause_after_failures"),
            next_run_time=next_run_time,
            pause_note=data.get("pause_note"),
            resumed_at=_instant(data.get("resumed_at")),
            metadata=data["metadata"],
        )
    except Exception as exc:
        # Anything: importing the callable's module runs user code (which may raise
        # RuntimeError, SyntaxError...), and a store lets only DeserializationError
        # through as "this one job is unreadable"; anything else would fail the whole
        # batch of leases, or get_jobs(), over one job.
        if isinstance(exc, InvalidCallableError):
            reason = f"its callable cannot be imported: {exc}"
        else:
            reason = f"{type(exc).__name__}: {exc}"
        raise DeserializationError(f"job {job_id!r} cannot be read back ({reason})") from exc


@attrs.frozen(kw_only=True)
class RunRecord:
    """A run as plain values: what a store writes in its runs table or hash."""

    id: str
    job_id: str
    scheduled_time: datetime
    started_at: datetime | None
    finished_at: datetime | None
    outcome: str | None
    result: str | None
    error: str | None
    scheduler_id: str
    attempt: int
    coalesced: int


def encode_run(run: Run, serializer: Serializer) -> RunRecord:
    """The plain values of a run; a result that cannot be stored is kept as ``None``
    (the run's outcome and error text are always kept)."""
    result: str | None = None
    if run.result is not None:
        try:
            result = serializer.dumps(run.result, "result")
        except SerializationError:
            result = None
    return RunRecord(
        id=str(run.id),
        job_id=run.job_id,
        scheduled_time=run.scheduled_time,
        started_at=run.started_at,
        finished_at=run.finished_at,
        outcome=None if run.outcome is None else run.outcome.value,
        result=result,
        error=run.error,
        scheduler_id=run.scheduler_id,
        attempt=run.attempt,
        coalesced=run.coalesced,
    )


def decode_run(record: RunRecord, serializer: Serializer) -> Run:
    """The run a record holds (a result that cannot be read is ``None``)."""
    result: Any = None
    if record.result is not None:
        try:
            result = serializer.loads(record.result)
        except DeserializationError:
            result = None
    return Run(
        id=UUID(record.id),
        job_id=record.job_id,
        scheduled_time=record.scheduled_time,
        started_at=record.started_at,
        finished_at=record.finished_at,
        outcome=None if record.outcome is None else RunOutcome(record.outcome),
        result=result,
        error=record.error,
        scheduler_id=record.scheduler_id,
        attempt=record.attempt,
        coalesced=record.coalesced,
    )


class LeftOut:
    """Reports the jobs that ``get_jobs()`` leaves out because they cannot be read back.

    An error the first time a store instance meets each one, at debug level after that:
    a dashboard lists the jobs every few seconds, and one line per job and page would
    bury the log. (The CLI and the dashboard list such jobs themselves.)
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._seen: set[str] = set()

    def report(self, store: object, job_id: str, exc: Exception) -> None:
        """Log that ``job_id`` is left out of ``store``'s job list, and why."""
        level = logging.DEBUG if job_id in self._seen else logging.ERROR
        self._seen.add(job_id)
        self._logger.log(
            level,
            "%r: job %r cannot be read back and is left out of get_jobs() (it stays "
            "stored; this is said once per job): %s",
            store,
            job_id,
            exc,
            extra={"horae_left_out": job_id},
        )
