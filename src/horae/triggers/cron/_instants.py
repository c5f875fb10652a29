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

Two per-trigger policies change that mapping (``dst_gap``, ``dst_repeated``):

- ``skip_gaps``: a gap wall maps to no instant. The remaining mapping (every other wall
  at its first occurrence) is strictly increasing, so the first matching wall after
  ``after``'s that is not a gap wall gives the answer; no look back is needed.
- ``both``: a repeated wall maps to both of its instants. The second instant of a
  repeated wall *before* ``after``'s wall time lands after ``after`` when ``after`` is
  in the first pass of that repeated stretch (``minute=0`` in London: after 01:30 BST
  comes 01:00 GMT), so that is a third candidate.

Instants are naive UTC datetimes here; comparing aware datetimes of one ``ZoneInfo``
would compare wall times and ignore ``fold`` (PEP 495).
"""

from __future__ import annotations

from datetime import datetime, timedelta, tzinfo

from horae._time import fixed_zone
from horae.triggers.cron._schedule import Schedule

__all__ = ["ZoneClock", "next_fire"]

_SECOND = timedelta(seconds=1)
_MICROSECOND = timedelta(microseconds=1)
# How far back to look for a spring-forward whose gap walls may land after ``after``:
# longer than any gap in the tz database (Pacific/Apia skipped a whole day in 2011).
_GAP_LOOKBACK = timedelta(hours=25)
_EPOCH = datetime(1970, 1, 1)


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
    schedule: Schedule,
    tz: tzinfo,
    after: datetime,
    *,
    skip_gaps: bool = False,
    both: bool = False,
) -> tuple[datetime, timedelta] | None:
    """The first fire instant strictly after ``after``, and the UTC offset then.

    The general path, right around any DST change; :class:`ZoneClock` takes a shortcut
    on days far from one.

    Args:
        schedule: the trigger's fields.
        tz: the trigger's zone.
        after: a naive UTC instant.
        skip_gaps: gap walls do not fire (``dst_gap="skip"``).
        both: repeated walls fire at both occurrences (``dst_repeated="both"``).

    Returns:
        ``(naive UTC instant, offset)``, or ``None`` when the schedule is exhausted.
    """
    local = tz.fromutc(after.replace(tzinfo=tz))
    offset = local.utcoffset()
    assert offset is not None
    wall_after = local.replace(tzinfo=None, fold=0)
    start = _after(wall_after)
    if local.fold and not both:
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
        if skip_gaps and before_offset < after_offset:
            wall = schedule.next_wall(wall + _SECOND)
            continue
        if instant <= after:
            if both and before_offset > after_offset and wall - after_offset > after:
                # ``after`` is in the second pass of a repeated stretch; this wall's
                # second occurrence comes first, as every later wall lands later.
                best = (wall - after_offset, after_offset)
                break
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

    if both and not local.fold:
        second_offset = local.replace(fold=1).utcoffset()
        assert second_offset is not None
        if second_offset < offset:
            # ``after`` is in the first pass of a repeated stretch: the second occurrence
            # of a repeated wall less than the overlap before ``after``'s wall time lands
            # after ``after``. Repeated walls start where the fall-back lands.
            overlap = offset - second_offset
            change = _transition(tz, after, after + overlap)
            low = max(change + second_offset, _after(wall_after - overlap))
            wall = schedule.next_wall(low)
            if wall is not None and wall <= wall_after:
                instant = wall - second_offset
                if instant > after and (best is None or instant < best[0]):
                    best = (instant, second_offset)

    if skip_gaps:
        return best
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


_DAY = timedelta(days=1)
_HALF_DAY = timedelta(hours=12)
_Wall = tuple[int, int, int, int, int, int]


def _in_gap(tz: tzinfo, wall: _Wall) -> bool:
    """Whether a wall time is skipped by a spring-forward (PEP 495: fold 1 reads later)."""
    first = tz.utcoffset(datetime(*wall, 0, tz))
    second = tz.utcoffset(datetime(*wall, 0, tz, fold=1))
    assert first is not None
    assert second is not None
    return first < second


class ZoneClock:
    """Fire times of one schedule in one zone, with a shortcut for quiet days.

    A day is *quiet* when the zone's offset is the same from the start of the day before
    it to the end of the day after it. From a quiet day, a matching wall time on that day
    or the next one is neither skipped nor repeated, no earlier gap wall can land after
    it, and it maps to an instant with the offset already known: no search for a DST
    change is needed. Quietness is cached per day.

    The quiet-day shortcut holds for every DST policy: around a quiet day nothing is
    skipped or repeated. Off it, a trigger with a non-default policy takes the general
    path unless ``after``'s day is quiet and the next matching wall time is unambiguous;
    the default policy's code is untouched, so it pays nothing for the others.

    Args:
        tz: the trigger's zone.
        fixed: the zone's offset if it never changes (UTC, Etc/GMT-2), else ``None``.
        skip_gaps: gap walls do not fire (``dst_gap="skip"``).
        both: repeated walls fire at both occurrences (``dst_repeated="both"``).
    """

    __slots__ = ("_both", "_fixed_tz", "_policy", "_quiet", "_skip_gaps", "tz")

    def __init__(
        self, tz: tzinfo, fixed: timedelta | None, *, skip_gaps: bool = False, both: bool = False
    ) -> None:
        self.tz = tz
        self._fixed_tz = None if fixed is None else fixed_zone(fixed, tz.tzname(_EPOCH))
        self._quiet: dict[int, tuple[int, int, int] | None] = {}
        self._skip_gaps = skip_gaps
        self._both = both
        #: Whether a policy differs from the default (vectors rule 8).
        self._policy = skip_gaps or both

    def _next_day_if_quiet(self, year: int, month: int, day: int) -> tuple[int, int, int] | None:
        """The day after a quiet day, or ``None`` when the day is not quiet."""
        key = (year * 16 + month) * 32 + day
        try:
            return self._quiet[key]
        except KeyError:
            pass
        tz = self.tz
        result: tuple[int, int, int] | None = None
        try:
            moment = datetime(year, month, day, tzinfo=tz) - _DAY
            offset = moment.utcoffset()
            for _ in range(6):
                moment += _HALF_DAY
                if moment.utcoffset() != offset:
                    break
            else:
                following = datetime(year, month, day) + _DAY
                result = (following.year, following.month, following.day)
        except OverflowError:
            result = None
        if len(self._quiet) >= 1024:
            self._quiet.clear()
        self._quiet[key] = result
        return result

    def next(self, schedule: Schedule, after: datetime) -> datetime | None:
        """The first fire time strictly after the aware ``after``, or ``None``.

        The result is aware, with the fixed offset in force (see :func:`fixed_zone`).
        """
        tz = self.tz
        fixed_tz = self._fixed_tz
        if fixed_tz is not None:
            local = after.astimezone(fixed_tz)
            found = schedule.next_fields(
                local.year, local.month, local.day, local.hour, local.minute, local.second + 1
            )
            return None if found is None else datetime(*found, 0, fixed_tz)
        local = after.astimezone(tz)
        if local.fold:
            # In the second pass of a repeated hour: rare, take the general path.
            return self._general(schedule, after)
        year, month, day = local.year, local.month, local.day
        following = self._next_day_if_quiet(year, month, day)
        found = schedule.next_fields(year, month, day, local.hour, local.minute, local.second + 1)
        if found is None:
            return None
        offset = tz.utcoffset(local)
        assert offset is not None
        if following is not None and (found[:3] == following or found[:3] == (year, month, day)):
            return datetime(*found, 0, fixed_zone(offset, tz.tzname(local)))
        wall = datetime(*found, 0, tz)
        first = tz.utcoffset(wall)
        second = tz.utcoffset(datetime(*found, 0, tz, fold=1))
        assert first is not None
        assert second is not None
        if first < second:
            return self._general(schedule, after)  # a gap wall
        if self._policy:
            if following is None or (self._both and first != second):
                return self._general(schedule, after)
        elif following is None:
            # Not a quiet day: if a spring-forward came lately, gap walls a little before
            # ``after``'s wall time land after ``after`` and may come first.
            try:
                earlier = tz.utcoffset(local - _GAP_LOOKBACK)
            except OverflowError:
                earlier = None
            if earlier is not None and earlier < offset:
                gap = offset - earlier
                back = local - gap
                candidate = schedule.next_fields(
                    back.year, back.month, back.day, back.hour, back.minute, back.second + 1
                )
                if (
                    candidate is not None
                    and candidate <= (year, month, day, local.hour, local.minute, local.second)
                    and _in_gap(tz, candidate)
                ):
                    return self._general(schedule, after)
        # Unambiguous, or the first pass of a repeated wall time.
        return datetime(*found, 0, fixed_zone(first, tz.tzname(wall)))

    def _general(self, schedule: Schedule, after: datetime) -> datetime | None:
        tz = self.tz
        offset = after.utcoffset()
        assert offset is not None
        result = next_fire(
            schedule,
            tz,
            after.replace(tzinfo=None) - offset,
            skip_gaps=self._skip_gaps,
            both=self._both,
        )
        if result is None:
            return None
        instant, offset = result
        wall = instant + offset
        local = wall.replace(tzinfo=tz)
        if self._both and local.utcoffset() != offset:
            # The second occurrence of a repeated wall: named as the clocks name it then.
            local = local.replace(fold=1)
        return wall.replace(tzinfo=fixed_zone(offset, tz.tzname(local)))
