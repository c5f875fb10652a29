"""DateTrigger: fire once, at a given instant."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import attrs

from horae._time import express, require_aware
from horae.errors import TriggerError
from horae.triggers._args import (
    Moment,
    ZoneArg,
    aware_moment,
    format_instant,
    instant_key,
    iso,
    reject_unknown,
    trigger_zone,
    zone_key,
    zone_of,
)
from horae.triggers.base import register_trigger

__all__ = ["DateTrigger"]

_ARGUMENTS = ("run_date", "timezone")


@register_trigger
@attrs.frozen(init=False, repr=False)
class DateTrigger:
    """Fire once at ``run_date``, then never again.

    Args:
        run_date: when to fire: an aware datetime, a naive datetime or a date (read as
            wall time in ``timezone``; a wall time skipped or repeated by a DST change is
            read as RFC 5545 says: later by the gap, or its first occurrence), or an
            ISO 8601 string of any of these.
        timezone: an IANA zone name or a ``ZoneInfo``; ``None`` means the zone of
            ``run_date`` if it is a datetime with a ``ZoneInfo``, else the system's zone.
            Fire times are expressed in this zone.

    Raises:
        TriggerError: ``run_date`` is missing, empty or not a date, the zone is unknown,
            or an argument is not one this trigger takes.

    Example::

        DateTrigger("2027-02-14 16:38:05", timezone="Europe/Paris")
    """

    kind: ClassVar[str] = "date"

    run_date: datetime = attrs.field(eq=instant_key)
    timezone: ZoneInfo = attrs.field(eq=zone_key)

    def __init__(
        self,
        run_date: Moment | None = None,
        timezone: ZoneArg = None,
        **unknown: object,
    ) -> None:
        reject_unknown(self.kind, unknown, _ARGUMENTS)
        tz = trigger_zone(zone_of(run_date) if timezone is None else timezone)
        if run_date is None:
            raise TriggerError(
                "run_date",
                "run_date: None is not a date; the date trigger needs run_date, the date "
                "and time to fire at (add_job without a trigger runs a job once, now)",
            )
        self.__attrs_init__(aware_moment(run_date, tz, "run_date"), tz)

    def next(self, after: datetime) -> datetime | None:
        """``run_date`` if it is strictly after ``after``, else ``None``."""
        require_aware(after)
        if self.run_date.astimezone(timezone.utc) > after.astimezone(timezone.utc):
            return express(self.run_date, self.timezone)
        return None

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "date", "run_date": <ISO 8601>, "timezone": <IANA key>}``."""
        return {"kind": self.kind, "run_date": iso(self.run_date), "timezone": self.timezone.key}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DateTrigger:
        """Rebuild the trigger from :meth:`to_dict`'s output."""
        return cls(**{k: v for k, v in data.items() if k != "kind"})

    def describe(self) -> str:
        """``"once at 2027-02-14 16:38:05 CET"``."""
        return f"once at {format_instant(self.run_date)}"

    def __repr__(self) -> str:
        return f"DateTrigger(run_date={iso(self.run_date)!r}, timezone={self.timezone.key!r})"
