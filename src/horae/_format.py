"""Human-readable text shared by ``print_jobs()``, ``explain`` and the CLI: tables of
jobs, instants in a zone with how far away they are, durations."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo

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


def local_time(moment: datetime, tz: tzinfo) -> str:
    """``"2027-01-04 09:00:00 CET"``: ``moment`` in ``tz``."""
    return f"{moment.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}"


def when(moment: datetime | None, tz: tzinfo, now: datetime) -> str:
    """``"2027-01-04 09:00:00 CET (in 3 min)"``, in ``tz``; ``"-"`` for no time."""
    if moment is None:
        return "-"
    return f"{local_time(moment, tz)} ({relative(moment, now)})"


def duration(delta: timedelta) -> str:
    """``"250 ms"``, ``"1.5 s"``, ``"4 min 10 s"``, ``"2 h 5 min"``, ``"3 d 4 h"``."""
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 59.95:  # what rounds to "60.0 s" is shown as a minute
        return f"{seconds:.1f}".removesuffix(".0") + " s"
    whole = int(seconds)
    for unit, size, smaller, small_size in (
        ("d", 86400, "h", 3600),
        ("h", 3600, "min", 60),
        ("min", 60, "s", 1),
    ):
        if whole >= size:
            amount, rest = divmod(whole, size)
            rest //= small_size
            return f"{amount} {unit}" + (f" {rest} {smaller}" if rest else "")
    return f"{whole} s"  # pragma: no cover


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
        next_run = "paused" if job.next_run_time is None else when(job.next_run_time, tz, now)
        rows.append((job.id, job.name, describe_trigger(job), next_run))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)]
        lines.append("  ".join([*cells, row[3]]))
    return "\n".join(lines)
