"""CalendarIntervalTrigger: fire at a wall-clock time every N years, months, weeks or days."""

from __future__ import annotations

import calendar
import enum
from collections.abc import Mapping
from datetime import date, datetime, time, timezone
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import attrs

from horae._time import express, localize, require_aware, wall_instants
from horae.errors import TriggerError
from horae.triggers._args import (
    DST_ARGUMENTS,
    DstGap,
    DstRepeated,
    Moment,
    ZoneArg,
    check_dst_gap,
    check_dst_repeated,
    check_int,
    describe_dst,
    dst_items,
    format_instant,
    instant_key,
    iso,
    parse_moment,
    reject_unknown,
    trigger_zone,
    zone_key,
    zone_of,
)
from horae.triggers.base import register_trigger

__all__ = ["CalendarIntervalTrigger"]

_UTC = timezone.utc
_PERIODS = ("years", "months", "weeks", "days")
_TIME_FIELDS = (("hour", 23), ("minute", 59), ("second", 59))
_ARGUMENTS = (
    *_PERIODS,
    "hour",
    "minute",
    "second",
    "start_date",
    "end_date",
    "timezone",
    *DST_ARGUMENTS,
)
_SINGULAR = {"years": "year", "months": "month", "weeks": "week", "days": "day"}
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MAX_ORDINAL = date.max.toordinal()


class _Past(enum.Enum):
    """Occurrences beyond year 9999, which ``datetime`` cannot hold: the series ends."""

    YEAR_9999 = enum.auto()


# Mean length of a Gregorian month (146097 days / 4800 months), to estimate an occurrence
# index from a distance in days.
_MEAN_MONTH_DAYS = 146097 / 4800


@register_trigger
@attrs.frozen(init=False, repr=False)
class CalendarIntervalTrigger:
    """Fire at ``hour:minute:second`` local time on every N-th calendar date.

    The series is anchored on the date of ``start_date``. Occurrence k (k = 0, 1, ...) is
    on the anchor plus k·``years`` years and k·``months`` months, plus k·``weeks`` weeks
    and k·``days`` days. When the years and months land on a day that does not exist
    (the 31st of a 30-day month, February 29 of a common year), that occurrence is
    skipped and the series keeps its anchor day: monthly from January 31 fires on
    January 31, March 31, May 31, July 31, August 31, ...

    Wall times are mapped to instants RFC 5545 style by default: a time skipped by a
    spring-forward change fires later by the gap's length, a time repeated by a fall-back
    change fires at its first occurrence. ``dst_gap="skip"`` drops that date's fire time
    instead (the next occurrence follows), and ``dst_repeated="both"`` fires at both
    occurrences of a repeated time.

    Args:
        years: number of years between occurrences (an int, zero or more); likewise
            ``months``, ``weeks`` and ``days``. At least one must be above zero.
        hour: the local hour to fire at, 0..23; likewise ``minute`` and ``second``
            (0..59).
        start_date: a date, a datetime or an ISO 8601 string. A date (or a date-only
            string) anchors the series and fires on that date. A datetime anchors the
            series on its date in ``timezone``, and an occurrence earlier than it does not
            fire. ``None`` means today in ``timezone`` (read from the system clock once, at
            construction; the scheduler passes its own clock's date instead).
        end_date: the last moment to fire (inclusive): a datetime, or a date meaning the
            whole of that date; ``None`` means never.
        timezone: an IANA zone name or a ``ZoneInfo``; ``None`` means the zone of
            ``start_date`` if it is a datetime with a ``ZoneInfo``, else the system's zone.
        dst_gap: ``"shift"`` (the default) or ``"skip"``: whether a fire time that a
            spring-forward change skips fires later by the gap's length, or not at all.
        dst_repeated: ``"first"`` (the default) or ``"both"``: whether a fire time that
            a fall-back change repeats fires at its first occurrence only, or at both.

    Raises:
        TriggerError: a number is not a non-negative integer or out of range, no period
            is given (field ``"interval"``), a date is invalid, ``end_date`` is before
            ``start_date``, the zone or a DST policy is unknown, or an argument is not
            one this trigger takes.

    Example::

        CalendarIntervalTrigger(months=2, hour=9, start_date="2026-01-31",
                                timezone="Europe/Paris")
        CalendarIntervalTrigger(days=1, hour=2, minute=30, timezone="America/New_York",
                                dst_gap="skip")
    """

    kind: ClassVar[str] = "calendarinterval"

    years: int
    months: int
    weeks: int
    days: int
    hour: int
    minute: int
    second: int
    start_date: date | datetime = attrs.field(eq=instant_key)
    end_date: date | datetime | None = attrs.field(eq=instant_key)
    timezone: ZoneInfo = attrs.field(eq=zone_key)
    dst_gap: DstGap
    dst_repeated: DstRepeated

    def __init__(
        self,
        *,
        years: int = 0,
        months: int = 0,
        weeks: int = 0,
        days: int = 0,
        hour: int = 0,
        minute: int = 0,
        second: int = 0,
        start_date: Moment | None = None,
        end_date: Moment | None = None,
        timezone: ZoneArg = None,
        dst_gap: DstGap = "shift",
        dst_repeated: DstRepeated = "first",
        **unknown: object,
    ) -> None:
        reject_unknown(self.kind, unknown, _ARGUMENTS)
        tz = trigger_zone(zone_of(start_date) if timezone is None else timezone)
        periods = {"years": years, "months": months, "weeks": weeks, "days": days}
        for name, value in periods.items():
            check_int(value, name, 0)
        for (name, high), value in zip(_TIME_FIELDS, (hour, minute, second), strict=True):
            check_int(value, name, 0, high)
        if not any(periods.values()):
            raise TriggerError(
                "interval",
                "interval: years, months, weeks and days are all zero; give at least one "
                "of years, months, weeks, days greater than zero",
            )
        start = (
            datetime.now(tz).date()
            if start_date is None
            else _calendar_moment(start_date, tz, "start_date")
        )
        end = None if end_date is None else _calendar_moment(end_date, tz, "end_date")
        if end is not None and _end_before_start(start, end, tz):
            shown = iso(start)
            raise TriggerError(
                "end_date",
                f"end_date: {end_date!r} is before start_date {shown!r}; "
                "give an end_date at or after start_date, or None for no end",
            )
        gap, repeated = check_dst_gap(dst_gap), check_dst_repeated(dst_repeated)
        self.__attrs_init__(
            years, months, weeks, days, hour, minute, second, start, end, tz, gap, repeated
        )

    # --- the series -------------------------------------------------------------------

    @property
    def _anchor(self) -> date:
        start = self.start_date
        return start.astimezone(self.timezone).date() if isinstance(start, datetime) else start

    def _nominal(self, anchor: date, k: int) -> int:
        """Ordinal of occurrence k with a missing day clamped to its month's end.

        Unlike the real series this exists for every k and strictly increases with k, so
        it can be searched; past year 9999 it is simply larger than any date.
        """
        year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + k * self._month_step, 12)
        if year > 9999:
            return _MAX_ORDINAL + 1 + k
        day = min(anchor.day, calendar.monthrange(year, month0 + 1)[1])
        return date(year, month0 + 1, day).toordinal() + k * self._day_step

    def _occurrence(self, anchor: date, k: int) -> date | _Past | None:
        """The date of occurrence k; ``None`` when skipped."""
        year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + k * self._month_step, 12)
        if year > 9999:
            return _Past.YEAR_9999
        if anchor.day > calendar.monthrange(year, month0 + 1)[1]:
            return None
        ordinal = date(year, month0 + 1, anchor.day).toordinal() + k * self._day_step
        if ordinal > _MAX_ORDINAL:
            return _Past.YEAR_9999
        return date.fromordinal(ordinal)

    @property
    def _month_step(self) -> int:
        return self.years * 12 + self.months

    @property
    def _day_step(self) -> int:
        return self.weeks * 7 + self.days

    def _first_index_on_or_after(self, anchor: date, ordinal: int) -> int:
        """The smallest k whose nominal date is on or after the date ``ordinal``."""
        mean_step = self._month_step * _MEAN_MONTH_DAYS + self._day_step
        # The estimate is within a step or two of the answer (months vary in length by
        # at most three days); the loops correct it, so next() does not walk the series.
        k = max(0, int((ordinal - anchor.toordinal()) / mean_step) - 1)
        while k > 0 and self._nominal(anchor, k - 1) >= ordinal:
            k -= 1
        while self._nominal(anchor, k) < ordinal:
            k += 1
        return k

    def next(self, after: datetime) -> datetime | None:
        """The first occurrence strictly after ``after``, or ``None`` when exhausted."""
        require_aware(after)
        after_utc = after.astimezone(_UTC)
        anchor = self._anchor
        start = self.start_date
        start_utc = start.astimezone(_UTC) if isinstance(start, datetime) else None
        end = self.end_date
        end_utc = end.astimezone(_UTC) if isinstance(end, datetime) else None
        at = time(self.hour, self.minute, self.second)
        tz = self.timezone
        # The default policy maps each date to one instant (vectors rule 8); the others
        # to none (a skipped gap time) or two (both passes of a repeated time).
        default = self.dst_gap == "shift" and self.dst_repeated == "first"
        skip_gap, both = self.dst_gap == "skip", self.dst_repeated == "both"
        try:
            local_after = after_utc.astimezone(tz).date().toordinal()
        except OverflowError:
            return None
        # A fire time after ``after`` is on its local date or later, or on the date
        # before: pushed over midnight by a spring-forward gap, or (``both``) the second
        # pass of a time repeated across midnight.
        k = self._first_index_on_or_after(anchor, local_after - 1)
        while True:
            day = self._occurrence(anchor, k)
            k += 1
            if day is _Past.YEAR_9999:
                return None
            if day is None:
                continue
            if end is not None and end_utc is None and day > end:
                return None
            wall = datetime.combine(day, at)
            try:
                fires = (
                    (localize(wall, tz),)
                    if default
                    else wall_instants(wall, tz, skip_gap=skip_gap, both=both)
                )
            except OverflowError:
                return None
            for fire in fires:
                fire_utc = fire.astimezone(_UTC)
                if end_utc is not None and fire_utc > end_utc:
                    return None
                if fire_utc > after_utc and (start_utc is None or fire_utc >= start_utc):
                    return express(fire, tz)

    # --- values -----------------------------------------------------------------------

    def _arguments(self) -> list[tuple[str, object]]:
        args: list[tuple[str, object]] = [
            (name, getattr(self, name))
            for name in (*_PERIODS, "hour", "minute", "second")
            if getattr(self, name)
        ]
        args.append(("start_date", iso(self.start_date)))
        if self.end_date is not None:
            args.append(("end_date", iso(self.end_date)))
        args.append(("timezone", self.timezone.key))
        args.extend(dst_items(self.dst_gap, self.dst_repeated))
        return args

    def to_dict(self) -> dict[str, Any]:
        """The arguments as plain JSON: non-zero numbers, ISO dates and the zone's key.

        ``dst_gap`` and ``dst_repeated`` are stored only when they are not the defaults.
        """
        return {"kind": self.kind, **dict(self._arguments())}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalendarIntervalTrigger:
        """Rebuild the trigger from :meth:`to_dict`'s output."""
        return cls(**{k: v for k, v in data.items() if k != "kind"})

    def describe(self) -> str:
        """``"every 2 months on day 31 at 09:00 (Europe/Paris) from 2026-01-31"``."""
        given = [(name, getattr(self, name)) for name in _PERIODS if getattr(self, name)]
        if len(given) == 1 and given[0][1] == 1:
            period = _SINGULAR[given[0][0]]
        else:
            words = [f"{n} {_SINGULAR[name] if n == 1 else name}" for name, n in given]
            period = ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]
        anchor = self._anchor
        names = {name for name, _ in given}
        if names == {"years"}:
            period += f" on {_MONTHS[anchor.month - 1]} {anchor.day}"
        elif names <= {"years", "months"}:
            period += f" on day {anchor.day}"
        elif names == {"weeks"}:
            period += f" on {_WEEKDAYS[anchor.weekday()]}"
        at = f"{self.hour:02d}:{self.minute:02d}"
        if self.second:
            at += f":{self.second:02d}"
        start = self.start_date
        since = format_instant(start) if isinstance(start, datetime) else start.isoformat()
        text = f"every {period} at {at} ({self.timezone.key}) from {since}"
        end = self.end_date
        if end is not None:
            text += f" until {format_instant(end) if isinstance(end, datetime) else end}"
        return text + describe_dst(self.dst_gap, self.dst_repeated)

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={value!r}" for name, value in self._arguments())
        return f"CalendarIntervalTrigger({args})"


def _calendar_moment(value: object, tz: ZoneInfo, field: str) -> date | datetime:
    """A date stays a date; a datetime becomes aware in ``tz`` (naive: rule 8)."""
    moment = parse_moment(value, field)
    if not isinstance(moment, datetime):
        return moment
    try:
        if moment.tzinfo is None or moment.utcoffset() is None:
            return localize(moment, tz)
        return moment.astimezone(tz)
    except OverflowError:
        raise TriggerError(
            field, f"{field}: {value!r} is too close to the ends of the datetime range"
        ) from None


def _end_before_start(start: date | datetime, end: date | datetime, tz: ZoneInfo) -> bool:
    if not isinstance(end, datetime):
        # A date-only end_date covers its whole date.
        start_day = start.astimezone(tz).date() if isinstance(start, datetime) else start
        return end < start_day
    if isinstance(start, datetime):
        return end.astimezone(_UTC) < start.astimezone(_UTC)
    return end.astimezone(_UTC) < localize(datetime.combine(start, time()), tz).astimezone(_UTC)
