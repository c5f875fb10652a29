"""What the ``horae`` command line prints: aligned tables, relative times, JSON values.

Private to :mod:`horae.cli`. Every function returns text (or plain JSON-able values);
only the CLI writes to stdout.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

from horae._format import describe_trigger, duration, local_time, relative, when
from horae._listing import UnreadableJob
from horae.jobs import Job, Run
from horae.stores.base import SchedulerInfo

__all__ = [
    "describe_trigger",
    "dumps",
    "fire_times_table",
    "job_details",
    "job_to_json",
    "jobs_table",
    "run_to_json",
    "runs_table",
    "scheduler_to_json",
    "schedulers_table",
    "table",
    "unreadable_job_to_json",
    "unreadable_lines",
    "when",
]


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart; no trailing blanks."""
    all_rows = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(row[i]) for row in all_rows) for i in range(len(headers))]
    lines = []
    for row in all_rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _duration(run: Run) -> str:
    if run.started_at is None or run.finished_at is None:
        return "-"
    return duration(run.finished_at - run.started_at)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def jobs_table(
    jobs: Sequence[Job], tz: tzinfo, now: datetime, unreadable: Sequence[UnreadableJob] = ()
) -> str:
    """The jobs, one a line: id, name, trigger, next run time (``paused`` when none);
    then the jobs that cannot be read here, with why."""
    if not jobs and not unreadable:
        return "No jobs."
    rows = [
        (
            job.id,
            job.name,
            describe_trigger(job),
            "paused" if job.next_run_time is None else when(job.next_run_time, tz, now),
        )
        for job in jobs
    ]
    parts = [table(("ID", "NAME", "TRIGGER", "NEXT RUN"), rows)] if rows else []
    if unreadable:
        parts.append(unreadable_lines(unreadable))
    return "\n\n".join(parts)


def unreadable_lines(unreadable: Sequence[UnreadableJob]) -> str:
    """The jobs that cannot be read here: a heading, one line each, and what to do."""
    count = len(unreadable)
    lines = [f"{count} job{'s' if count != 1 else ''} cannot be read here:"]
    width = max(len(job.id) for job in unreadable)
    lines += [f"  {job.id.ljust(width)}  {job.error or '(not looked up)'}" for job in unreadable]
    lines.append(
        "A scheduler where a job's callable imports still runs it. Run this command where "
        "the job modules import (PYTHONPATH), or remove the job: horae jobs remove ID."
    )
    if any("'__main__:" in (job.error or "") for job in unreadable):
        lines.append(
            "A function of the script that added a job (__main__:...) imports only in "
            "that script's process: give jobs functions of importable modules."
        )
    return "\n".join(lines)


def job_details(job: Job, tz: tzinfo, now: datetime) -> str:
    """One job as ``field: value`` lines."""

    def opt(value: timedelta | None) -> str:
        return "no limit" if value is None else f"{value.total_seconds():g} s"

    fields = [
        ("id", job.id),
        ("name", job.name),
        ("func", job.func_ref or repr(job.func)),
        ("trigger", describe_trigger(job)),
        ("next run", "paused" if job.next_run_time is None else when(job.next_run_time, tz, now)),
        ("args", dumps(list(job.args))),
        ("kwargs", dumps(dict(job.kwargs))),
        ("executor", job.executor),
        ("coalesce", "yes" if job.coalesce else "no"),
        ("max instances", str(job.max_instances)),
        ("misfire grace", opt(job.misfire_grace_time)),
        ("timeout", opt(job.timeout)),
        ("retry", "none" if job.retry is None else f"{job.retry.attempts} attempts"),
        ("overlap", job.overlap),
    ]
    if job.on_crash is not None:
        fields.append(("on crash", job.on_crash))
    if job.max_runs is not None:
        fields.append(("max runs", str(job.max_runs)))
    if job.pause_after_failures is not None:
        fields.append(("pause after", f"{job.pause_after_failures} failed fire times in a row"))
    if job.pause_note is not None:
        fields.append(("pause note", job.pause_note))
    if job.metadata:
        fields.append(("metadata", dumps(dict(job.metadata))))
    width = max(len(name) for name, _ in fields) + 1
    return "\n".join(f"{(name + ':').ljust(width)} {value}" for name, value in fields)


def job_to_json(job: Job) -> dict[str, Any]:
    """The job as plain JSON values (times in ISO 8601, durations in seconds); its
    ``error`` is ``None`` (see :func:`unreadable_job_to_json`)."""
    return {
        "id": job.id,
        "name": job.name,
        "func": job.func_ref,
        "trigger": describe_trigger(job),
        "trigger_data": job.trigger.to_dict(),
        "next_run_time": _iso(job.next_run_time),
        "paused": job.next_run_time is None,
        "args": list(job.args),
        "kwargs": dict(job.kwargs),
        "executor": job.executor,
        "coalesce": job.coalesce,
        "max_instances": job.max_instances,
        "misfire_grace_time": _seconds(job.misfire_grace_time),
        "jitter": _seconds(job.jitter),
        "timeout": _seconds(job.timeout),
        "retry_attempts": None if job.retry is None else job.retry.attempts,
        "overlap": job.overlap,
        "on_crash": job.on_crash,
        "max_runs": job.max_runs,
        "pause_after_failures": job.pause_after_failures,
        "pause_note": job.pause_note,
        "metadata": dict(job.metadata),
        "error": None,
    }


#: The keys of :func:`job_to_json`, in its order.
_JOB_KEYS = (
    "id",
    "name",
    "func",
    "trigger",
    "trigger_data",
    "next_run_time",
    "paused",
    "args",
    "kwargs",
    "executor",
    "coalesce",
    "max_instances",
    "misfire_grace_time",
    "jitter",
    "timeout",
    "retry_attempts",
    "overlap",
    "on_crash",
    "max_runs",
    "pause_after_failures",
    "pause_note",
    "metadata",
    "error",
)


def unreadable_job_to_json(job: UnreadableJob) -> dict[str, Any]:
    """A job that cannot be read here, with the keys of :func:`job_to_json`: its ``id``,
    ``error`` saying why, and ``None`` for what could not be read."""
    return dict.fromkeys(_JOB_KEYS) | {"id": job.id, "error": job.error}


def runs_table(runs: Sequence[Run], tz: tzinfo, now: datetime) -> str:
    """The runs, newest first: fire time, start, duration, outcome, attempt, detail."""
    rows = []
    for run in runs:
        if run.outcome is None:
            outcome, detail = "running", ""
        elif run.error:
            outcome = str(run.outcome)
            lines = run.error.strip().splitlines()
            detail = lines[-1] if lines else ""
        else:
            outcome = str(run.outcome)
            detail = "" if run.result is None else _short(repr(run.result))
        rows.append(
            (
                when(run.scheduled_time, tz, now),
                when(run.started_at, tz, now),
                _duration(run),
                outcome,
                str(run.attempt),
                run.scheduler_id,
                detail,
            )
        )
    headers = ("SCHEDULED", "STARTED", "TOOK", "OUTCOME", "TRY", "SCHEDULER", "RESULT/ERROR")
    return table(headers, rows)


def run_to_json(run: Run) -> dict[str, Any]:
    """The run as plain JSON values."""
    return {
        "id": str(run.id),
        "job_id": run.job_id,
        "scheduled_time": _iso(run.scheduled_time),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "outcome": None if run.outcome is None else str(run.outcome),
        "result": run.result,
        "error": run.error,
        "scheduler_id": run.scheduler_id,
        "attempt": run.attempt,
        "coalesced": run.coalesced,
    }


def _silence(info: SchedulerInfo, now: datetime) -> str:
    """``"alive"``, or how long the scheduler has been silent (``"silent for 5 min"``)."""
    if info.alive(now):
        return "alive"
    seconds = max(int((now - info.heartbeat_at).total_seconds()), 0)
    return f"silent for {duration(timedelta(seconds=seconds))}"


def schedulers_table(infos: Sequence[SchedulerInfo], tz: tzinfo, now: datetime) -> str:
    """The register of schedulers: who runs the jobs, whether each is still heard from."""
    if not infos:
        return (
            "No scheduler is registered on this store: nothing runs its jobs now "
            "(clients, such as this command, are not listed)."
        )
    rows = [
        (
            info.id,
            info.host,
            str(info.pid),
            info.state,
            local_time(info.started_at, tz),
            relative(info.heartbeat_at, now),
            _silence(info, now),
            str(info.job_leases),
            str(info.run_leases),
            info.version or "-",
        )
        for info in infos
    ]
    headers = (
        "ID",
        "HOST",
        "PID",
        "STATE",
        "STARTED",
        "LAST HEARTBEAT",
        "ALIVE",
        "JOB LEASES",
        "RUNS",
        "VERSION",
    )
    return table(headers, rows)


def scheduler_to_json(info: SchedulerInfo, now: datetime) -> dict[str, Any]:
    """A scheduler's record as plain JSON values; ``silent_for`` in seconds (``None``
    while it is alive)."""
    alive = info.alive(now)
    return {
        "id": info.id,
        "host": info.host,
        "pid": info.pid,
        "state": info.state,
        "version": info.version,
        "started_at": _iso(info.started_at),
        "heartbeat_at": _iso(info.heartbeat_at),
        "expires_at": _iso(info.expires_at),
        "alive": alive,
        "silent_for": None if alive else round((now - info.heartbeat_at).total_seconds(), 3),
        "job_leases": info.job_leases,
        "run_leases": info.run_leases,
    }


def fire_times_table(times: Sequence[datetime], now: datetime) -> str:
    """Numbered fire times, in the trigger's zone, with how far away each is."""
    rows = [
        (f"{i}.", f"{moment:%a %Y-%m-%d %H:%M:%S %Z}", f"({relative(moment, now)})")
        for i, moment in enumerate(times, 1)
    ]
    return table(("#", "FIRES AT", "WHEN"), rows)


def dumps(value: Any) -> str:
    """JSON text; values JSON has no type for (datetime, Decimal...) as their ``str()``."""
    return json.dumps(value, default=str, ensure_ascii=False)


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
