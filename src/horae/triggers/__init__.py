"""Triggers: when a job fires.

Aliases usable in ``add_job(func, "<alias>", **args)``: ``"date"``, ``"interval"``,
``"calendarinterval"``, ``"cron"``. Combine triggers with :class:`AndTrigger` and
:class:`OrTrigger`.
"""

from __future__ import annotations

from horae.triggers.base import (
    Trigger,
    create_trigger,
    register_trigger,
    trigger_from_dict,
)
from horae.triggers.calendarinterval import CalendarIntervalTrigger
from horae.triggers.combining import AndTrigger, OrTrigger
from horae.triggers.cron import CronTrigger
from horae.triggers.date import DateTrigger
from horae.triggers.interval import IntervalTrigger

__all__ = [
    "AndTrigger",
    "CalendarIntervalTrigger",
    "CronTrigger",
    "DateTrigger",
    "IntervalTrigger",
    "OrTrigger",
    "Trigger",
    "create_trigger",
    "register_trigger",
    "trigger_from_dict",
]
