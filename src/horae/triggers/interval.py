"""IntervalTrigger: fire every fixed length of elapsed time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import attrs

from horae._time import express, require_aware
from horae.errors import TriggerError
from horae.triggers._args import (
    Moment,
    ZoneArg,
    aware_moment,
    check_number,
    format_instant,
    instant_key,
    iso,
    reject_unknown,
    trigger_zone,
    zone_key,
    zone_of,
)
from horae.triggers.base import register_trigger

__all__ = ["IntervalTrigger"]

_UTC = timezone.utc
_UNITS = ("weeks", "days", "hours", "minutes", "seconds", "microseconds")
_ARGUMENTS = (*_UNITS, "start_date", "end_date", "timezone")
_SINGULAR = {
    "weeks": "week",
    "days": "day",
    "hours": "hour",
    "minutes": "minute",
    "seconds": "second",
    "microseconds": "microsecond",
}


@register_trigger
@attrs.frozen(init=False, repr=False)
class IntervalTrigger:
    """Fire at ``start_date``, then every ``interval`` of elapsed time.

    The interval is the sum of the ``weeks`` .. ``microseconds`` arguments. Fire times are
    ``start_date + k * interval`` for k = 0, 1, 2, ..., computed on UTC instants, so a
    DST change never stretches or shrinks an interval (``hours=24`` fires at 09:00 before
    a spring-forward change and at 10:00 after it; use :class:`CalendarIntervalTrigger`
    to keep a wall-clock time).

    Args:
        weeks: number of weeks (an int or a float, zero or more); likewise ``days``,
            ``hours``, ``minutes``, ``seconds`` and ``microseconds``. Their sum must be
            longer than zero.
        start_date: the first fire time (a datetime, a date or an ISO 8601 string; naive
            values are wall time in ``timezone``). ``None`` means the moment of
            construction (read from the system clock once, then stored: the trigger is a
            value from then on, and ``to_dict()`` keeps that instant). The scheduler
            passes the time of its own clock instead.
        end_date: the last moment a fire time may have (inclusive); ``None`` means never.
        timezone: an IANA zone name or a ``ZoneInfo`` in which fire times are expressed and
            naive dates are read. ``None`` means the zone of ``start_date`` if it is a
            datetime with a ``ZoneInfo``, else the system's zone.

    Raises:
        TriggerError: a part of the interval is not a number or is negative, the interval
            is zero (field ``"interval"``), a date is invalid or ``end_date`` is before
            ``start_date``, the zone is unknown, or an argument is not one this trigger
            takes.

    Example::

        IntervalTrigger(minutes=5, start_date="2026-01-01 00:00", timezone="UTC")
    """

    kind: ClassVar[str] = "interval"

    weeks: float
    days: float
    hours: float
    minutes: float
    seconds: float
    microseconds: float
    start_date: datetime = attrs.field(eq=instant_key)
    end_date: datetime | None = attrs.field(eq=instant_key)
    timezone: ZoneInfo = attrs.field(eq=zone_key)
    #: Whether ``start_date`` was left out, so that it is the moment the trigger was
    #: built: a job re-added at every start (``replace_existing``) keeps its stored place
    #: then. Neither stored nor compared.
    start_defaulted: bool = attrs.field(default=False, init=False, eq=False)

    def __init__(
        self,
        *,
        weeks: float = 0,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
        microseconds: float = 0,
        start_date: Moment | None = None,
        end_date: Moment | None = None,
        timezone: ZoneArg = None,
        **unknown: object,
    ) -> None:
        reject_unknown(self.kind, unknown, _ARGUMENTS)
        tz = trigger_zone(zone_of(start_date) if timezone is None else timezone)
        parts = {
            "weeks": weeks,
            "days": days,
            "hours": hours,
            "minutes": minutes,
            "seconds": seconds,
            "microseconds": microseconds,
        }
        for name, value in parts.items():
            check_number(value, name)
        try:
            interval = timedelta(**parts)
        except OverflowError:
            raise TriggerError(
                "interval",
                f"interval: {_describe_parts(parts)} is longer than Python's timedelta "
                "allows (999999999 days)",
            ) from None
        if interval <= timedelta(0):
            raise TriggerError(
                "interval",
                "interval: the interval must be longer than zero, but it is zero; give at "
                f"least one of {', '.join(_UNITS)} greater than zero",
            )
        if start_date is None:
            start = datetime.now(tz)
        else:
            start = aware_moment(start_date, tz, "start_date")
        end = None if end_date is None else aware_moment(end_date, tz, "end_date")
        if end is not None and end.astimezone(_UTC) < start.astimezone(_UTC):
            raise TriggerError(
                "end_date",
                f"end_date: {end_date!r} is before start_date {iso(start)!r}; "
                "give an end_date at or after start_date, or None for no end",
            )
        self.__attrs_init__(weeks, days, hours, minutes, seconds, microseconds, start, end, tz)
        if start_date is None:
            object.__setattr__(self, "start_defaulted", True)

    def starting_at(self, start: datetime) -> IntervalTrigger:
        """This trigger with ``start`` as its start date, for a ``start`` at or before
        ``end_date`` (one of this trigger's own fire times, say): what ``__init__`` would
        build, without checking the other arguments again."""
        new = object.__new__(IntervalTrigger)
        new.__attrs_init__(
            self.weeks,
            self.days,
            self.hours,
            self.minutes,
            self.seconds,
            self.microseconds,
            start.astimezone(self.timezone),
            self.end_date,
            self.timezone,
        )
        return new

    @property
    def interval(self) -> timedelta:
        """The length of time between two fire times."""
        return timedelta(
            weeks=self.weeks,
            days=self.days,
            hours=self.hours,
            minutes=self.minutes,
            seconds=self.seconds,
            microseconds=self.microseconds,
        )

    def next(self, after: datetime) -> datetime | None:
        """The first ``start_date + k * interval`` strictly after ``after``, or ``None``."""
        require_aware(after)
        start = self.start_date.astimezone(_UTC)
        after_utc = after.astimezone(_UTC)
        interval = self.interval
        if after_utc < start:
            candidate = start
        else:
            # Integer arithmetic on microseconds: exact, whatever the distance.
            steps = (after_utc - start) // interval + 1
            try:
                candidate = start + steps * interval
            except OverflowError:
                return None
        if self.end_date is not None and candidate > self.end_date.astimezone(_UTC):
            return None
        try:
            return express(candidate, self.timezone)
        except OverflowError:
            return None

    def to_dict(self) -> dict[str, Any]:
        """The arguments as plain JSON: non-zero parts, ISO dates and the zone's key."""
        data: dict[str, Any] = {"kind": self.kind}
        for name in _UNITS:
            value = getattr(self, name)
            if value:
                data[name] = value
        data["start_date"] = iso(self.start_date)
        if self.end_date is not None:
            data["end_date"] = iso(self.end_date)
        data["timezone"] = self.timezone.key
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IntervalTrigger:
        """Rebuild the trigger from :meth:`to_dict`'s output."""
        return cls(**{k: v for k, v in data.items() if k != "kind"})

    def describe(self) -> str:
        """``"every 5 minutes from 2026-01-01 00:00 UTC"`` (and ``until ...``)."""
        parts = {name: getattr(self, name) for name in _UNITS}
        text = f"every {_describe_parts(parts, drop_single_one=True)} "
        text += f"from {format_instant(self.start_date)}"
        if self.end_date is not None:
            text += f" until {format_instant(self.end_date)}"
        return text

    def __repr__(self) -> str:
        args = [f"{name}={getattr(self, name)!r}" for name in _UNITS if getattr(self, name)]
        args.append(f"start_date={iso(self.start_date)!r}")
        if self.end_date is not None:
            args.append(f"end_date={iso(self.end_date)!r}")
        args.append(f"timezone={self.timezone.key!r}")
        return f"IntervalTrigger({', '.join(args)})"


def _describe_parts(parts: Mapping[str, float], drop_single_one: bool = False) -> str:
    """``{"hours": 1, "minutes": 30}`` as ``"1 hour and 30 minutes"``.

    With ``drop_single_one``, a lone 1 loses its number (``"hour"``, for "every hour").
    """
    words = []
    given = [(name, value) for name, value in parts.items() if value]
    for name, value in given:
        shown = int(value) if isinstance(value, float) and value.is_integer() else value
        unit = _SINGULAR[name] if shown == 1 else name
        words.append(
            unit if drop_single_one and len(given) == 1 and shown == 1 else f"{shown} {unit}"
        )
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]
