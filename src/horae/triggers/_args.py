"""Argument checking and formatting shared by the built-in triggers.

Triggers validate everything at construction (vectors rule 11), with messages that name
the argument and the value as the caller gave it; these helpers keep that wording the same
across trigger classes.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime, timezone, tzinfo
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from horae._time import resolve_timezone, to_aware
from horae.errors import TriggerError

_UTC = timezone.utc

#: What a trigger accepts as a date or datetime argument.
Moment = datetime | date | str

#: What a trigger accepts as its ``timezone`` argument.
ZoneArg = str | tzinfo | None

#: What a wall-clock trigger does with a wall time that a spring-forward change skips:
#: ``"shift"`` fires it later by the gap's length (vectors rule 8), ``"skip"`` drops it.
DstGap = Literal["shift", "skip"]

#: What a wall-clock trigger does with a wall time that a fall-back change repeats:
#: ``"first"`` fires at its first occurrence only (vectors rule 8), ``"both"`` at both.
DstRepeated = Literal["first", "both"]

#: Arguments only wall-clock triggers take; other triggers say so when given them.
DST_ARGUMENTS = ("dst_gap", "dst_repeated")


def reject_unknown(kind: str, unknown: Mapping[str, object], accepted: Sequence[str]) -> None:
    """Raise for the first keyword argument the trigger does not take, naming a close match.

    Raises:
        TriggerError: ``unknown`` is not empty; ``field`` is the unknown name.
    """
    for name, value in unknown.items():
        if name == "jitter":
            raise TriggerError(
                name,
                f"jitter: the {kind} trigger takes no jitter; jitter is a job option, "
                "give it to add_job(..., jitter=seconds) instead",
            )
        if name in DST_ARGUMENTS:
            raise TriggerError(
                name,
                f"{name}: the {kind} trigger takes no argument {name!r} (given {value!r}); "
                "DST policies apply to the wall-clock triggers, cron and calendarinterval "
                f"(the {kind} trigger takes {', '.join(accepted)})",
            )
        close = difflib.get_close_matches(name, accepted, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TriggerError(
            name,
            f"{name}: the {kind} trigger takes no argument {name!r} (given {value!r}){hint} "
            f"(it takes {', '.join(accepted)})",
        )


def check_dst_gap(value: object) -> DstGap:
    """A ``dst_gap`` argument: ``"shift"`` or ``"skip"``.

    Raises:
        TriggerError: on ``dst_gap``, naming the value and the choices.
    """
    if isinstance(value, str):
        if value == "shift":
            return "shift"
        if value == "skip":
            return "skip"
    raise TriggerError(
        "dst_gap", f"dst_gap: {value!r} is not a DST gap policy; use 'shift' or 'skip'"
    )


def check_dst_repeated(value: object) -> DstRepeated:
    """A ``dst_repeated`` argument: ``"first"`` or ``"both"``.

    Raises:
        TriggerError: on ``dst_repeated``, naming the value and the choices.
    """
    if isinstance(value, str):
        if value == "first":
            return "first"
        if value == "both":
            return "both"
    raise TriggerError(
        "dst_repeated",
        f"dst_repeated: {value!r} is not a DST repeated-time policy; use 'first' or 'both'",
    )


def dst_items(dst_gap: DstGap, dst_repeated: DstRepeated) -> list[tuple[str, str]]:
    """The DST policies that differ from the defaults, as ``(name, value)`` pairs.

    ``to_dict()`` and ``repr()`` show only these, so a trigger with the default policies
    stores exactly what it stored before the policies existed.
    """
    items: list[tuple[str, str]] = []
    if dst_gap != "shift":
        items.append(("dst_gap", dst_gap))
    if dst_repeated != "first":
        items.append(("dst_repeated", dst_repeated))
    return items


def describe_dst(dst_gap: DstGap, dst_repeated: DstRepeated) -> str:
    """The end of a description for non-default DST policies, or ``""``.

    Starts with a comma, not a semicolon: combined triggers join their children's
    descriptions with semicolons.
    """
    skip, both = dst_gap == "skip", dst_repeated == "both"
    if skip and both:
        return (
            ", skipping wall times missing and firing twice at wall times repeated "
            "on DST change days"
        )
    if skip:
        return ", skipping wall times missing on DST change days"
    if both:
        return ", firing twice at wall times repeated on DST change days"
    return ""


def trigger_zone(value: ZoneArg) -> ZoneInfo:
    """The ``ZoneInfo`` for a trigger's ``timezone`` argument (``None``: the system's zone).

    A trigger's zone must have an IANA key, because ``to_dict()`` stores the key and a
    stored trigger must read back the same; fixed offsets and anonymous zones are refused.

    Raises:
        TriggerError: on ``timezone``, for an unknown name or a zone without an IANA key.
    """
    tz = resolve_timezone(value, "timezone")
    if isinstance(tz, ZoneInfo) and tz.key:
        return tz
    # pytz zones carry their IANA name as ``zone``.
    name = getattr(tz, "zone", None)
    if isinstance(name, str):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise TriggerError(
        "timezone",
        f"timezone: {value!r} has no IANA name, so a stored trigger could not be read back; "
        "give an IANA name such as 'Europe/Paris' ('Etc/GMT-2' is a fixed UTC+02:00)",
    )


def zone_of(value: object) -> ZoneArg:
    """The ``ZoneInfo`` of an aware datetime argument, to default a trigger's zone to it."""
    if isinstance(value, datetime) and isinstance(value.tzinfo, ZoneInfo) and value.tzinfo.key:
        return value.tzinfo
    return None


def parse_moment(value: object, field: str) -> datetime | date:
    """Read a date/datetime argument: a ``date``, a ``datetime`` or an ISO 8601 string.

    A string with only a date part gives a ``date``; anything else keeps its type.
    Nothing is converted to a zone here (see :func:`aware_moment`).

    Raises:
        TriggerError: on ``field``, naming the value and the accepted forms.
    """
    if isinstance(value, (datetime, date)):
        return value
    if not isinstance(value, str):
        raise TriggerError(
            field,
            f"{field}: {value!r} is not a datetime, a date or an ISO 8601 string "
            "(for example '2027-02-14 16:38:05')",
        )
    text = value.strip()
    if not text:
        raise TriggerError(
            field,
            f"{field}: {value!r} is empty; give a datetime, a date or an ISO 8601 string "
            "such as '2027-02-14 16:38:05'",
        )
    if text.endswith(("Z", "z")):
        # Python < 3.11 does not read the "Z" suffix.
        text = text[:-1] + "+00:00"
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise TriggerError(
            field,
            f"{field}: {value!r} is not a valid ISO 8601 date or datetime ({exc}); "
            "give for example '2027-02-14', '2027-02-14 16:38:05' or "
            "'2027-02-14T16:38:05+01:00'",
        ) from None


def aware_moment(value: object, tz: tzinfo, field: str) -> datetime:
    """Read a date/datetime argument as an aware datetime in ``tz``.

    Naive values (and dates, as midnight) are wall times in ``tz``, read by vectors rule 8.

    Raises:
        TriggerError: on ``field``, as :func:`parse_moment`.
    """
    try:
        return to_aware(parse_moment(value, field), tz, field)
    except OverflowError:
        raise TriggerError(
            field, f"{field}: {value!r} is too close to the ends of the datetime range"
        ) from None


def instant_key(value: datetime | date | None) -> object:
    """Equality key for date/datetime fields: aware datetimes compare as UTC instants.

    Two aware datetimes sharing a ``tzinfo`` compare by wall time, ignoring ``fold``
    (PEP 495), so the two 01:30s of a fall-back night would otherwise look equal.
    """
    if isinstance(value, datetime):
        return value.astimezone(_UTC)
    return value


def zone_key(value: ZoneInfo) -> str:
    """Equality key for a trigger's zone: its IANA key."""
    return str(value.key)


def iso(value: datetime | date) -> str:
    """A date or aware datetime as the ISO 8601 string ``to_dict()`` stores."""
    return value.isoformat()


def format_time(value: datetime) -> str:
    """Wall time for descriptions: ``16:38``, or ``16:38:05`` when seconds are set.

    Microseconds are left out: a description is for people, ``to_dict()`` is exact.
    """
    return value.strftime("%H:%M:%S" if value.second else "%H:%M")


def format_instant(value: datetime) -> str:
    """An aware datetime for descriptions: ``2027-02-14 16:38:05 CET``."""
    return f"{value:%Y-%m-%d} {format_time(value)} {value.tzname()}"


def check_number(value: object, field: str) -> float:
    """A non-negative finite int or float (not a bool), as given.

    Raises:
        TriggerError: on ``field``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TriggerError(
            field, f"{field}: {value!r} is not a number; give an int or a float such as 5"
        )
    if not math.isfinite(value):
        raise TriggerError(field, f"{field}: {value!r} is not a finite number")
    if value < 0:
        raise TriggerError(field, f"{field}: {value!r} is negative; give zero or more")
    return value


def check_int(value: object, field: str, low: int, high: int | None = None) -> int:
    """An int (not a bool) in ``low..high`` (no upper bound when ``high`` is ``None``).

    Raises:
        TriggerError: on ``field``.
    """
    valid = f"an integer {low}..{high}" if high is not None else f"an integer {low} or more"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TriggerError(field, f"{field}: {value!r} is not an integer; give {valid}")
    if value < low or (high is not None and value > high):
        raise TriggerError(field, f"{field}: {value!r} is out of range; give {valid}")
    return value
