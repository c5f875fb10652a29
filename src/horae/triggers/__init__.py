"""Triggers: when a job fires.

Aliases usable in ``add_job(func, "<alias>", **args)``: ``"date"``, ``"interval"``,
``"calendarinterval"``, ``"cron"``.
"""

from __future__ import annotations

from horae.triggers.base import (
    Trigger,
    create_trigger,
    register_trigger,
    trigger_from_dict,
)

__all__ = [
    "Trigger",
    "create_trigger",
    "register_trigger",
    "trigger_from_dict",
]
