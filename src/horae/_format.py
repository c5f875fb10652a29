"""Human-readable tables of jobs (``print_jobs()``, later the CLI)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from horae.jobs import Job


def relative(when: datetime, now: datetime) -> str:
    """``"in 3 min"``, ``"2 h ago"``, ``"now"``."""
    seconds = (when - now).total_seconds()
    future = seconds >= 0
    if 0 < seconds < 1:
        return "in <1 s"
    seconds = abs(seconds)
    if seconds < 1:
        return "now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size:
            amount = int(seconds // size)
            return f"in {amount} {unit}" if future else f"{amount} {unit} ago"
    return "now"  # pragma: no cover


def describe_trigger(job: Job) -> str:
    """The trigger's own description, or its repr if it has none."""
    describe = getattr(job.trigger, "describe", None)
    if callable(describe):
        try:
            return str(describe())
        except Exception:
            pass
    return repr(job.trigger)


def format_jobs(jobs: Sequence[Job], tz: tzinfo, now: datetime) -> str:
    """An aligned text table of ``jobs``."""
    if not jobs:
        return "No scheduled jobs."
    rows = [("ID", "NAME", "TRIGGER", "NEXT RUN")]
    for job in jobs:
        if job.next_run_time is None:
            next_run = "paused"
        else:
            local = job.next_run_time.astimezone(tz)
            next_run = f"{local:%Y-%m-%d %H:%M:%S %Z} ({relative(job.next_run_time, now)})"
        rows.append((job.id, job.name, describe_trigger(job), next_run))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        lines.append("  ".join([*cells, row[3]]))
    return "\n".join(lines)
