"""Time zone and datetime helpers shared by triggers and the scheduler.

Everything inside horae works on aware datetimes; these helpers are the edge where
naive datetimes, ISO strings and zone names come in.
"""

from __future__ import annotations

import os
import warnings
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from horae.errors import TriggerError

UTC = timezone.utc
_utc_zone = ZoneInfo("UTC")


def resolve_timezone(value: str | tzinfo | None, field: str = "timezone") -> tzinfo:
    """Return the ``tzinfo`` for an IANA zone name or an existing ``tzinfo``.

    ``None`` means the system's zone (see :func:`system_timezone`).

    Raises:
        TriggerError: the name is not an IANA time zone, or the value is of another type.
    """
    if value is None:
        return system_timezone()
    if isinstance(value, tzinfo):
        if value is UTC:
            return _utc_zone
        return value
    if not isinstance(value, str):
        raise TriggerError(
            field,
            f"{field}: {value!r} is not a time zone; "
            "give an IANA name such as 'Europe/Paris' or a tzinfo",
        )
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise TriggerError(
            field,
            f"{field}: {value!r} is not a known IANA time zone "
            "(for example 'UTC', 'Europe/Paris', 'America/New_York')",
        ) from None


@lru_cache(maxsize=1)
def system_timezone() -> tzinfo:
    """The system's IANA time zone, from ``TZ`` or ``/etc/localtime``; else UTC.

    Falling back to UTC warns once: a fixed offset would be wrong across DST changes,
    so horae never guesses one.
    """
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        target = os.path.realpath("/etc/localtime")
        marker = "zoneinfo/"
        if marker in target:
            return ZoneInfo(target.split(marker, 1)[1])
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    try:
        with open("/etc/timezone", encoding="ascii") as f:
            return ZoneInfo(f.read().strip())
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    warnings.warn(
        "horae could not determine the system's IANA time zone (set TZ or pass "
        "timezone=...); using UTC",
        RuntimeWarning,
        stacklevel=2,
    )
    return _utc_zone


def localize(naive: datetime, tz: tzinfo) -> datetime:
    """Map a wall-clock time in ``tz`` to an instant, the RFC 5545 way.

    A wall time in a spring-forward gap is read with the offset in force before the gap
    (so it lands later by the gap's length); a wall time that occurs twice is its first
    occurrence. The result is expressed in ``tz`` with the offset actually in force.
    """
    # PEP 495: fold=0 picks the offset before the transition, for gaps and overlaps alike.
    aware = naive.replace(tzinfo=tz, fold=0)
    return aware.astimezone(UTC).astimezone(tz)


def wall_instants(
    naive: datetime, tz: tzinfo, *, skip_gap: bool, both: bool
) -> tuple[datetime, ...]:
    """Map a wall-clock time in ``tz`` to the instants a trigger fires at, by DST policy.

    ``skip_gap=False, both=False`` is :func:`localize` (vectors rule 8). With
    ``skip_gap``, a wall time in a spring-forward gap maps to no instant; with ``both``,
    a wall time that occurs twice maps to both occurrences, earlier first. Results are
    expressed in ``tz`` with the offset actually in force (and ``fold`` set accordingly).
    """
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    first_offset = first.utcoffset()
    second_offset = second.utcoffset()
    # As in localize(): fold=0 reads a gap time with the offset before the gap.
    mapped = first.astimezone(UTC).astimezone(tz)
    if first_offset is None or second_offset is None or first_offset == second_offset:
        return (mapped,)
    if first_offset < second_offset:  # PEP 495: in a gap, fold=1 reads the later offset
        return () if skip_gap else (mapped,)
    if both:
        return (mapped, second.astimezone(UTC).astimezone(tz))
    return (mapped,)


def express(instant: datetime, tz: tzinfo) -> datetime:
    """An aware datetime as a trigger returns it: same instant, ``tz``'s offset then.

    The result's tzinfo is a fixed offset named by the zone's abbreviation (``CEST``),
    not ``tz`` itself. A ``ZoneInfo`` datetime in a repeated (fall-back) hour compares
    unequal to every datetime with another tzinfo, and two ``ZoneInfo`` datetimes of one
    zone compare by wall time, ignoring ``fold`` (PEP 495); so 01:30 BST and 01:30 GMT
    would look equal. With a fixed offset, ``==`` and ``<`` always compare instants.
    """
    local = instant.astimezone(tz)
    offset = local.utcoffset()
    if offset is None:  # only a broken tzinfo returns no offset
        return local
    return local.replace(tzinfo=fixed_zone(offset, local.tzname()), fold=0)


@lru_cache(maxsize=1024)
def fixed_zone(offset: timedelta, name: str | None) -> timezone:
    """A fixed-offset ``tzinfo`` named like the zone at that moment (``CEST``); see
    :func:`express` for why triggers return these."""
    return timezone(offset, name) if name else timezone(offset)


def to_aware(
    value: datetime | date | str,
    tz: tzinfo,
    field: str,
) -> datetime:
    """Convert a datetime, date or ISO 8601 string to an aware datetime.

    Naive values (and dates, read as midnight) are wall times in ``tz``; aware values keep
    their instant and are expressed in ``tz``.

    Raises:
        TriggerError: the value is not a date, a datetime or an ISO 8601 string.
    """
    if isinstance(value, str):
        try:
            parsed: datetime | date = datetime.fromisoformat(value)
        except ValueError:
            try:
                parsed = date.fromisoformat(value)
            except ValueError:
                raise TriggerError(
                    field,
                    f"{field}: {value!r} is not an ISO 8601 date or datetime "
                    "(for example '2027-02-14 16:38:05' or '2027-02-14T16:38:05+01:00')",
                ) from None
        value = parsed
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return localize(value, tz)
        return value.astimezone(tz)
    if isinstance(value, date):
        return localize(datetime.combine(value, time()), tz)
    raise TriggerError(
        field,
        f"{field}: {value!r} is not a datetime, a date or an ISO 8601 string",
    )


def require_aware(value: datetime, name: str = "after") -> None:
    """Raise ``ValueError`` if ``value`` is a naive datetime."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got naive {value!r}")
