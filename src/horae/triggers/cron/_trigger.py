"""CronTrigger: fire at the wall-clock times that match cron fields."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import attrs

from horae._time import require_aware
from horae.errors import TriggerError
from horae.triggers._args import (
    DST_ARGUMENTS,
    DstGap,
    DstRepeated,
    Moment,
    ZoneArg,
    aware_moment,
    check_dst_gap,
    check_dst_repeated,
    describe_dst,
    dst_items,
    format_instant,
    instant_key,
    iso,
    reject_unknown,
    trigger_zone,
    zone_key,
)
from horae.triggers.base import register_trigger
from horae.triggers.cron._crontab import CRONTAB_FIELDS, MACROS, expand_macro, parse_crontab
from horae.triggers.cron._describe import describe_fields
from horae.triggers.cron._fields import KEYWORD_SPECS, ParsedField, parse_field
from horae.triggers.cron._instants import ZoneClock
from horae.triggers.cron._schedule import Schedule

__all__ = ["CronTrigger"]

#: The keyword fields, most significant first (vectors rule 5 depends on the order).
FIELDS = ("year", "month", "day", "week", "day_of_week", "hour", "minute", "second")
_DEFAULTS = {
    "year": "*",
    "month": "1",
    "day": "1",
    "week": "*",
    "day_of_week": "*",
    "hour": "0",
    "minute": "0",
    "second": "0",
}
_ARGUMENTS = (*FIELDS, "start_date", "end_date", "timezone", *DST_ARGUMENTS)
# Names people write from other cron tools, and what CronTrigger calls them.
_ALIASES = {
    "dow": "day_of_week",
    "weekday": "day_of_week",
    "weekdays": "day_of_week",
    "day_of_month": "day",
    "dom": "day",
    "mday": "day",
    "wday": "day_of_week",
    "tz": "timezone",
    "start": "start_date",
    "end": "end_date",
    "start_time": "start_date",
    "end_time": "end_date",
}
_MICROSECOND = timedelta(microseconds=1)
_UTC = dt_timezone.utc
_FIXED_ZONES = ("UTC", "GMT", "UCT", "Universal", "Zulu", "Greenwich")
_ZERO = ParsedField(((0, 0, 1),))


def _reject_unknown(unknown: Mapping[str, object]) -> None:
    for name, value in unknown.items():
        meant = _ALIASES.get(name.lower())
        if meant is None and name.lower().rstrip("s") in _ARGUMENTS:
            meant = name.lower().rstrip("s")
        if meant is None:
            close = difflib.get_close_matches(name, _ARGUMENTS, n=1)
            meant = close[0] if close else None
        if meant is not None:
            raise TriggerError(
                name,
                f"{name}: the cron trigger takes no argument {name!r} (given {value!r}); "
                f"did you mean {meant!r}? (it takes {', '.join(_ARGUMENTS)})",
            )
    reject_unknown("cron", unknown, _ARGUMENTS)


def _expression(name: str, value: object) -> str | None:
    """A keyword field as stored: a string, or ``None`` when not given."""
    if value is None or isinstance(value, str):
        return value
    spec = KEYWORD_SPECS[name]
    if isinstance(value, int) and not isinstance(value, bool):
        if not spec.low <= value <= spec.high:
            raise TriggerError(name, f"{name}: {value} is out of range; use {spec.valid}")
        return str(value)
    raise TriggerError(
        name,
        f"{name}: {value!r} is not a cron expression; give a string such as '*/5', "
        f"'1-5' or '1,15' (or an integer) with values {spec.valid}",
    )


def _fixed_offset(tz: ZoneInfo) -> timedelta | None:
    # Zones that never change offset skip the DST machinery (a fast path only: the
    # general path gives the same answers).
    key = tz.key
    if key in _FIXED_ZONES or key.startswith("Etc/"):
        return tz.utcoffset(datetime(2000, 1, 1))
    return None


def _dates(
    start_date: Moment | None, end_date: Moment | None, tz: ZoneInfo
) -> tuple[datetime | None, datetime | None]:
    start = None if start_date is None else aware_moment(start_date, tz, "start_date")
    end = None if end_date is None else aware_moment(end_date, tz, "end_date")
    if start is not None and end is not None and end.astimezone(_UTC) < start.astimezone(_UTC):
        given = end_date if isinstance(end_date, str) else iso(end)
        raise TriggerError(
            "end_date",
            f"end_date: {given!r} is before start_date {iso(start)!r}; the trigger would "
            "never fire (both dates are inclusive; give an end_date on or after start_date)",
        )
    return start, end


def _utc(value: datetime | None) -> datetime | None:
    # Bounds compare as UTC: two aware datetimes of one ZoneInfo compare by wall time.
    return None if value is None else value.astimezone(_UTC)


def _repr_moment(value: datetime | None) -> str | None:
    return None if value is None else iso(value)


@register_trigger
@attrs.frozen(init=False, repr=False)
class CronTrigger:
    """Fire at the wall-clock times in ``timezone`` that match every given field.

    Each field takes a comma list of ``*``, ``*/n``, ``a``, ``a-b``, ``a-b/n`` and ``a/n``
    (an integer works too: ``hour=3``); ranges never wrap around. Fields more significant
    than the least significant one given are ``*``; less significant ones start at their
    minimum, so ``hour=3`` fires at 03:00:00 every day. ``day`` and ``day_of_week`` given
    together must both match. Across DST changes, by default, a skipped wall time fires
    later by the gap's length and a repeated one fires once, at its first occurrence;
    ``dst_gap`` and ``dst_repeated`` choose otherwise.

    Args:
        year: 1970..9999.
        month: 1..12 or jan..dec.
        day: 1..31, ``last``, ``last fri`` or ``1st``..``5th fri``.
        week: ISO 8601 week, 1..53.
        day_of_week: mon..sun or 0..6 with **0 = Monday** (crontab strings, read by
            :meth:`from_crontab`, count from Sunday).
        hour: 0..23.
        minute: 0..59.
        second: 0..59.
        start_date: first possible fire time (inclusive); naive values and dates are wall
            times in ``timezone``; ISO 8601 strings are accepted.
        end_date: last possible fire time (inclusive).
        timezone: an IANA zone name or a ``ZoneInfo``; ``None`` means the system's zone.
        dst_gap: what a matching wall time that a spring-forward change skips does:
            ``"shift"`` (the default) fires it later by the gap's length, ``"skip"`` does
            not fire it that day.
        dst_repeated: what a matching wall time that a fall-back change repeats does:
            ``"first"`` (the default) fires at its first occurrence only, ``"both"`` at
            both occurrences.

    Raises:
        TriggerError: a field, date, zone or DST policy is invalid, or an argument name
            is unknown (naming the one that was probably meant).

    Example::

        CronTrigger(day_of_week="mon-fri", hour=9, timezone="Europe/Paris")
        CronTrigger.from_crontab("*/5 * * * *", timezone="UTC")
        CronTrigger(hour=2, minute=30, timezone="America/New_York", dst_gap="skip")
    """

    kind: ClassVar[str] = "cron"

    year: str | None
    month: str | None
    day: str | None
    week: str | None
    day_of_week: str | None
    hour: str | None
    minute: str | None
    second: str | None
    start_date: datetime | None = attrs.field(eq=instant_key)
    end_date: datetime | None = attrs.field(eq=instant_key)
    timezone: ZoneInfo = attrs.field(eq=zone_key)
    #: The crontab string when the trigger was made by :meth:`from_crontab`.
    crontab: str | None
    dst_gap: DstGap
    dst_repeated: DstRepeated
    _schedule: Schedule = attrs.field(eq=False, repr=False)
    _clock: ZoneClock = attrs.field(eq=False, repr=False)
    _start_utc: datetime | None = attrs.field(eq=False, repr=False)
    _end_utc: datetime | None = attrs.field(eq=False, repr=False)

    def __init__(
        self,
        year: str | int | None = None,
        month: str | int | None = None,
        day: str | int | None = None,
        week: str | int | None = None,
        day_of_week: str | int | None = None,
        hour: str | int | None = None,
        minute: str | int | None = None,
        second: str | int | None = None,
        start_date: Moment | None = None,
        end_date: Moment | None = None,
        timezone: ZoneArg = None,
        *,
        dst_gap: DstGap = "shift",
        dst_repeated: DstRepeated = "first",
        **unknown: object,
    ) -> None:
        if unknown:
            _reject_unknown(unknown)
        given = (year, month, day, week, day_of_week, hour, minute, second)
        exprs = [_expression(name, value) for name, value in zip(FIELDS, given, strict=True)]
        parsed = [
            parse_field(KEYWORD_SPECS[name], expr)
            for name, expr in zip(FIELDS, _effective(exprs), strict=True)
        ]
        schedule = Schedule(
            year=parsed[0],
            month=parsed[1],
            day=parsed[2],
            week=parsed[3],
            day_of_week=parsed[4],
            hour=parsed[5],
            minute=parsed[6],
            second=parsed[7],
        )
        tz = trigger_zone(timezone)
        start, end = _dates(start_date, end_date, tz)
        gap, repeated = check_dst_gap(dst_gap), check_dst_repeated(dst_repeated)
        self._init(exprs, start, end, tz, None, schedule, gap, repeated)

    def _init(
        self,
        exprs: list[str | None],
        start: datetime | None,
        end: datetime | None,
        tz: ZoneInfo,
        crontab: str | None,
        schedule: Schedule,
        dst_gap: DstGap,
        dst_repeated: DstRepeated,
    ) -> None:
        year, month, day, week, day_of_week, hour, minute, second = exprs
        clock = ZoneClock(
            tz,
            _fixed_offset(tz),
            skip_gaps=dst_gap == "skip",
            both=dst_repeated == "both",
        )
        self.__attrs_init__(
            year=year,
            month=month,
            day=day,
            week=week,
            day_of_week=day_of_week,
            hour=hour,
            minute=minute,
            second=second,
            start_date=start,
            end_date=end,
            timezone=tz,
            crontab=crontab,
            dst_gap=dst_gap,
            dst_repeated=dst_repeated,
            schedule=schedule,
            clock=clock,
            start_utc=_utc(start),
            end_utc=_utc(end),
        )

    @classmethod
    def from_crontab(
        cls,
        expr: str,
        timezone: ZoneArg = None,
        *,
        start_date: Moment | None = None,
        end_date: Moment | None = None,
        dst_gap: DstGap = "shift",
        dst_repeated: DstRepeated = "first",
    ) -> CronTrigger:
        """A trigger from a crontab line: ``minute hour day month day_of_week``.

        POSIX/Vixie cron: ``day_of_week`` is 0..7 with 0 and 7 = Sunday (or sun..sat);
        ``sun`` ending a range is 7 (``fri-sun``). When ``day`` and ``day_of_week`` are
        both restricted (anything but exactly ``*``), a day fires if *either* matches.
        Extensions: ``L`` in ``day`` (last day of the month), ``5#3`` (third Friday) and
        ``5L`` (last Friday) in ``day_of_week``, and the macros ``@yearly``,
        ``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``.

        Args:
            expr: the five fields, separated by spaces, or a macro.
            timezone: an IANA zone name or a ``ZoneInfo``; ``None``: the system's zone.
            start_date: as for :class:`CronTrigger`.
            end_date: as for :class:`CronTrigger`.
            dst_gap: as for :class:`CronTrigger`: ``"shift"`` or ``"skip"``.
            dst_repeated: as for :class:`CronTrigger`: ``"first"`` or ``"both"``.

        Raises:
            TriggerError: on ``expr`` for a wrong number of fields, a non-string or an
                unknown macro (``@reboot`` included); on the field's name for a bad
                field; on ``dst_gap`` or ``dst_repeated`` for an unknown policy.

        Example::

            CronTrigger.from_crontab("0 9 * * mon-fri", timezone="Europe/Paris")
        """
        fields, day_or = parse_crontab(expr)
        schedule = Schedule(
            year=parse_field(KEYWORD_SPECS["year"], "*"),
            month=fields["month"],
            day=fields["day"],
            week=parse_field(KEYWORD_SPECS["week"], "*"),
            day_of_week=fields["day_of_week"],
            hour=fields["hour"],
            minute=fields["minute"],
            second=_ZERO,
            day_or=day_or,
        )
        tz = trigger_zone(timezone)
        start, end = _dates(start_date, end_date, tz)
        gap, repeated = check_dst_gap(dst_gap), check_dst_repeated(dst_repeated)
        self = cls.__new__(cls)
        self._init([None] * len(FIELDS), start, end, tz, expr, schedule, gap, repeated)
        return self

    def next(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after``, or ``None`` when there is none.

        Args:
            after: an aware datetime, in any zone; microseconds are allowed.

        Returns:
            An aware datetime whose ``tzinfo`` is the fixed UTC offset of ``timezone`` in
            force then (named like the zone, e.g. ``CEST``), so that comparisons are
            comparisons of instants even in a repeated hour.
        """
        if after.tzinfo is None:
            require_aware(after)
        if self._start_utc is not None and after < self._start_utc:
            after = self._start_utc - _MICROSECOND
        try:
            found = self._clock.next(self._schedule, after)
        except OverflowError:  # the search ran past year 9999
            return None
        if found is None or (self._end_utc is not None and found > self._end_utc):
            return None
        return found

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: the fields as given (strings), dates as ISO 8601, the zone's key.

        A trigger made by :meth:`from_crontab` stores its ``crontab`` string instead of
        the fields. ``dst_gap`` and ``dst_repeated`` are stored only when they are not
        the defaults.
        """
        data: dict[str, Any] = {"kind": self.kind}
        if self.crontab is not None:
            data["crontab"] = self.crontab
        else:
            data.update((name, getattr(self, name)) for name in FIELDS)
        data["start_date"] = _repr_moment(self.start_date)
        data["end_date"] = _repr_moment(self.end_date)
        data["timezone"] = self.timezone.key
        data.update(dst_items(self.dst_gap, self.dst_repeated))
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CronTrigger:
        """Rebuild the trigger from :meth:`to_dict`'s output.

        Raises:
            TriggerError: the dict holds invalid or unknown values.
        """
        args = {k: v for k, v in data.items() if k != "kind"}
        crontab = args.pop("crontab", None)
        if crontab is None:
            return cls(**args)
        extra = sorted(k for k, v in args.items() if v is not None and k in FIELDS)
        if extra:
            raise TriggerError(
                extra[0],
                f"{extra[0]}: a cron trigger dict holds either 'crontab' or the fields, "
                f"not both (got crontab={crontab!r} and {extra[0]}={args[extra[0]]!r})",
            )
        for name in FIELDS:
            args.pop(name, None)
        unknown = {k: v for k, v in args.items() if k not in _ARGUMENTS}
        if unknown:
            _reject_unknown(unknown)
        return cls.from_crontab(
            crontab,
            args.get("timezone"),
            start_date=args.get("start_date"),
            end_date=args.get("end_date"),
            dst_gap=args.get("dst_gap", "shift"),
            dst_repeated=args.get("dst_repeated", "first"),
        )

    def describe(self) -> str:
        """Short English: ``"at 09:00 on Monday through Friday (Europe/Paris)"``."""
        if self.crontab is not None:
            expanded = expand_macro(self.crontab)
            parts = expanded.split()
            fields = dict(zip(CRONTAB_FIELDS, parts, strict=True))
            fields.update(year="*", week="*", second="0")
            day_or = fields["day"] != "*" and fields["day_of_week"] != "*"
            text = describe_fields(fields, crontab=True, day_or=day_or)
            if self.crontab.strip().lower() in MACROS:
                text = f"{self.crontab.strip().lower()}: {text}"
        else:
            given = [getattr(self, name) for name in FIELDS]
            fields = dict(zip(FIELDS, _effective(given), strict=True))
            text = describe_fields(fields, crontab=False, day_or=False)
        text = f"{text} ({self.timezone.key})"
        if self.start_date is not None:
            text += f" from {format_instant(self.start_date)}"
        if self.end_date is not None:
            text += f" until {format_instant(self.end_date)}"
        return text + describe_dst(self.dst_gap, self.dst_repeated)

    def __repr__(self) -> str:
        dates = [
            f"{name}={_repr_moment(value)!r}"
            for name, value in (("start_date", self.start_date), ("end_date", self.end_date))
            if value is not None
        ]
        zone = f"timezone={self.timezone.key!r}"
        dst = [f"{name}={value!r}" for name, value in dst_items(self.dst_gap, self.dst_repeated)]
        if self.crontab is not None:
            args = [repr(self.crontab), zone, *dates, *dst]
            return f"CronTrigger.from_crontab({', '.join(args)})"
        fields = [f"{n}={getattr(self, n)!r}" for n in FIELDS if getattr(self, n) is not None]
        return f"CronTrigger({', '.join([*fields, *dates, zone, *dst])})"


def _effective(exprs: list[str | None]) -> list[str]:
    """The expressions a trigger applies (vectors rule 5).

    Fields more significant than the least significant given field are ``*``; less
    significant ones take their default (``1`` for month and day, ``0`` for the time,
    ``*`` for week and weekday). With no field given, every field is ``*``.
    """
    given = [i for i, expr in enumerate(exprs) if expr is not None]
    last = given[-1] if given else len(FIELDS)
    return [
        expr if expr is not None else ("*" if i < last else _DEFAULTS[FIELDS[i]])
        for i, expr in enumerate(exprs)
    ]
