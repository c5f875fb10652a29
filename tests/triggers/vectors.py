"""Load the shared trigger conformance vectors (``../shared/vectors`` from the repo root)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
VECTORS = REPO_ROOT.parent / "shared" / "vectors"

FILES = [
    "cron.json",
    "crontab.json",
    "interval.json",
    "calendarinterval.json",
    "date.json",
    "dst.json",
    "combining.json",
    "errors.json",
]


@cache
def load(filename: str) -> list[dict[str, Any]]:
    """The cases of one vector file; an empty list if the folder is missing.

    A missing folder must fail the run, not skip it: ``test_vectors_are_present`` does.
    """
    path = VECTORS / filename
    if not path.exists():
        return []
    cases: list[dict[str, Any]] = json.loads(path.read_text())["cases"]
    return cases


def build(kind: str, args: dict[str, Any]) -> Any:
    """Construct the trigger a case describes, exactly as vectors/README.md says."""
    from horae.triggers.calendarinterval import CalendarIntervalTrigger
    from horae.triggers.combining import AndTrigger, OrTrigger
    from horae.triggers.cron import CronTrigger
    from horae.triggers.date import DateTrigger
    from horae.triggers.interval import IntervalTrigger

    if kind == "cron":
        return CronTrigger(**args)
    if kind == "crontab":
        return CronTrigger.from_crontab(args["expr"], timezone=args["timezone"])
    if kind == "interval":
        return IntervalTrigger(**args)
    if kind == "calendarinterval":
        return CalendarIntervalTrigger(**args)
    if kind == "date":
        return DateTrigger(**args)
    if kind in ("and", "or"):
        children = [build(child["trigger"], child["args"]) for child in args["triggers"]]
        return AndTrigger(children) if kind == "and" else OrTrigger(children)
    raise AssertionError(f"unknown trigger kind in vectors: {kind}")
