"""From matching wall times to fire instants across DST changes (vectors README, rule 8).

A wall time is mapped the RFC 5545 way: in a spring-forward gap it is read with the
offset in force before the gap (so it lands later by the gap's length), and in a
fall-back overlap it is its first occurrence. That mapping is increasing on wall times
outside gaps, but a gap wall lands among the walls just after the gap: on Lord Howe's
30-minute gap, 02:20 lands at 02:50, after 02:40. So the next fire instant is the smaller
of two candidates:

- the first matching wall after ``after``'s wall time (if it is a gap wall, a matching
  wall just after the gap may land earlier than it does);
- a matching gap wall *before* ``after``'s wall time that lands after ``after`` (only
  when ``after`` is less than a gap's length past the gap).

Instants are naive UTC datetimes here; comparing aware datetimes of one ``ZoneInfo``
would compare wall times and ignore ``fold`` (PEP 495).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo

from horae.triggers.cron._schedule import Schedule

__all__ = ["fixed_zone", "next_fire"]

_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)
# How far back to look for a spring-forward whose gap walls may land after ``after``:
# longer than any gap in the tz database (Pacific/Apia skipped a whole day in 2011).
_GAP_LOOKBACK = timedelta(hours=25)
_EPOCH = datetime(1970, 1, 1)
_fixed: dict[tuple[timedelta, str | None], timezone] = {}


def fixed_zone(offset: timedelta, name: str | None) -> timezone:
    """A fixed-offset ``tzinfo`` named like the zone at that moment (``CEST``).

    Results carry it instead of the ``ZoneInfo``: aware datetimes with a fixed offset
    compare as instants, even in a repeated hour.
    """
    key = (offset, name)
    zone = _fixed.get(key)
    if zone is None:
        zone = timezone(offset, name) if name else timezone(offset)
        if len(_fixed) < 1024:
            _fixed[key] = zone
    return zone


def _offset_at(tz: tzinfo, instant: datetime) -> timedelta | None:
    return tz.fromutc(instant.replace(tzinfo=tz)).utcoffset()


def _transition(tz: tzinfo, before: datetime, at: datetime) -> datetime:
    """The first whole-second instant in ``(before, at]`` with the offset in force at ``at``.

    ``before`` must have another offset. The tz database changes offsets on whole
    seconds, so a binary search over seconds finds the change.
    """
    target = _offset_at(tz, at)
    low = (before - _EPOCH) // _SECOND  # offset differs here
    high = -((_EPOCH - at) // _SECOND)  # ceil: offset is the target's here
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_at(tz, _EPOCH + middle * _SECOND) == target:
            high = middle
        else:
            low = middle
    return _EPOCH + high * _SECOND


def _after(wall: datetime) -> datetime:
    """The first whole second strictly after ``wall``."""
    return wall.replace(microsecond=0, fold=0) + _SECOND


def next_fire(
    schedule: Schedule, tz: tzinfo, after: datetime, fixed: timedelta | None
) -> tuple[datetime, timedelta] | None:
    """The first fire instant strictly after ``after``, and the UTC offset then.

    Args:
        schedule: the trigger's fields.
        tz: the trigger's zone.
        after: a naive UTC instant.
        fixed: the zone's offset if it never changes (UTC, Etc/...), else ``None``.

    Returns:
        ``(naive UTC instant, offset)``, or ``None`` when the schedule is exhausted.
    """
    if fixed is not None:
        wall = schedule.next_wall(_after(after + fixed))
        return None if wall is None else (wall - fixed, fixed)

    local = tz.fromutc(after.replace(tzinfo=tz))
    offset = local.utcoffset()
    assert offset is not None
    wall_after = local.replace(tzinfo=None, fold=0)
    start = _after(wall_after)
    if local.fold:
        # ``after`` is in the second pass of a repeated hour. Repeated walls fire on
        # their first pass, which is over: go on from the end of the repeated hour.
        first_offset = local.replace(fold=0).utcoffset()
        assert first_offset is not None
        change = _transition(tz, after - (first_offset - offset), after)
        start = max(start, change + first_offset)

    best: tuple[datetime, timedelta] | None = None
    wall = schedule.next_wall(start)
    while wall is not None:
        before_offset = wall.replace(tzinfo=tz).utcoffset()
        after_offset = wall.replace(tzinfo=tz, fold=1).utcoffset()
        assert before_offset is not None
        assert after_offset is not None
        instant = wall - before_offset
        if instant <= after:
            # Only reachable around back-to-back transitions; keep walking forward.
            wall = schedule.next_wall(wall + _SECOND)
            continue
        if before_offset < after_offset:
            # A gap wall: it lands at ``instant``; matching walls just after the gap land
            # at ``[gap end, instant)`` and may come first.
            gap = after_offset - before_offset
            change = _transition(tz, instant - gap, instant)
            following = schedule.next_wall(change + after_offset)
            if following is not None and following < wall + gap:
                following_offset = following.replace(tzinfo=tz).utcoffset()
                assert following_offset is not None
                candidate = following - following_offset
                if after < candidate < instant:
                    best = (candidate, following_offset)
            if best is None:
                best = (instant, after_offset)
        else:
            # Unambiguous, or the first pass of a repeated wall (fold=0).
            best = (instant, before_offset)
        break

    try:
        earlier = _offset_at(tz, after - _GAP_LOOKBACK)
    except OverflowError:
        earlier = None
    if earlier is not None and earlier < offset:
        # A spring-forward happened lately: gap walls less than a gap's length before
        # ``after``'s wall time land after ``after``.
        gap = offset - earlier
        wall = schedule.next_wall(_after(wall_after - gap))
        if wall is not None and wall <= wall_after:
            before_offset = wall.replace(tzinfo=tz).utcoffset()
            after_offset = wall.replace(tzinfo=tz, fold=1).utcoffset()
            assert before_offset is not None
            assert after_offset is not None
            instant = wall - before_offset
            in_gap = before_offset < after_offset
            if in_gap and instant > after and (best is None or instant < best[0]):
                best = (instant, after_offset)
    return best
