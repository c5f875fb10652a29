"""The wall-clock search of a cron trigger: the first matching local time at or after another.

Nothing here knows about time zones: :class:`Schedule` answers "which naive wall time
comes next", and the trigger maps wall times to instants (DST rules live there).

The search goes field by field, never minute by minute: the next allowed year and month
come from lookup tables, the matching days of a month are one integer bit mask (built from
the day, weekday and ISO week fields and cached per month), and the time of day comes from
"next allowed value at or after v" tables for hour, minute and second.
"""

from __future__ import annotations

from datetime import date, datetime

from horae.triggers.cron._fields import ParsedField

__all__ = ["MAX_YEAR", "MIN_YEAR", "Schedule"]

MIN_YEAR = 1970
MAX_YEAR = 9999
# Dates, weekdays and ISO weeks repeat every 400 Gregorian years: a schedule that allows
# every year and matches no day in 400 of them never matches.
_CYCLE_YEARS = 400
_CACHE_LIMIT = 512
_DAYS_IN_MONTH = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _month_length(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month]


def _values(parsed: ParsedField) -> set[int]:
    values: set[int] = set()
    for first, last, step in parsed.ranges:
        values.update(range(first, last + 1, step))
    return values


def _next_table(values: set[int], size: int) -> tuple[int, ...]:
    """``table[v]``: the smallest allowed value >= v, or -1; ``table[size]`` is -1."""
    table = [-1] * (size + 1)
    following = -1
    for v in range(size - 1, -1, -1):
        if v in values:
            following = v
        table[v] = following
    return tuple(table)


class Schedule:
    """The compiled fields of a cron trigger.

    Args:
        year, month, day, week, day_of_week, hour, minute, second: the parsed fields.
            Weekdays count from Monday = 0 here (crontab ones are converted).
        day_or: a day matches when the day field *or* the weekday field matches (crontab
            strings where both are restricted); otherwise every date field must match.
    """

    __slots__ = (
        "_all_years",
        "_cache",
        "_day_last",
        "_day_last_weekdays",
        "_day_mask",
        "_day_nth",
        "_day_or",
        "_dow_last_weekdays",
        "_dow_masks",
        "_dow_nth",
        "_hours",
        "_minutes",
        "_months",
        "_seconds",
        "_weeks",
        "_year_ranges",
        "first_hour",
        "first_minute",
        "first_second",
    )

    def __init__(
        self,
        *,
        year: ParsedField,
        month: ParsedField,
        day: ParsedField,
        week: ParsedField,
        day_of_week: ParsedField,
        hour: ParsedField,
        minute: ParsedField,
        second: ParsedField,
        day_or: bool = False,
    ) -> None:
        self._year_ranges = year.ranges
        years_from_1970 = any(first <= MIN_YEAR and step == 1 for first, _, step in year.ranges)
        self._all_years = years_from_1970 and any(
            last >= MAX_YEAR and step == 1 for _, last, step in year.ranges
        )
        self._months = _next_table(_values(month), 13)
        # The day side: plain days, "last" ("L"), "3rd fri" and "last fri".
        self._day_mask = sum(1 << d for d in _values(day))
        self._day_last = day.last_day
        self._day_nth = day.nth_weekdays
        self._day_last_weekdays = day.last_weekdays
        # The weekday side: masks[w] holds the days 1..31 whose weekday is allowed in a
        # month that starts on weekday w; crontab "5#3" and "5L" come on top.
        weekdays = _values(day_of_week)
        self._dow_masks = tuple(
            sum(1 << d for d in range(1, 32) if (first + d - 1) % 7 in weekdays)
            for first in range(7)
        )
        self._dow_nth = day_of_week.nth_weekdays
        self._dow_last_weekdays = day_of_week.last_weekdays
        weeks = _values(week)
        self._weeks = None if weeks >= set(range(1, 54)) else frozenset(weeks)
        self._day_or = day_or
        self._hours = _next_table(_values(hour), 24)
        self._minutes = _next_table(_values(minute), 60)
        self._seconds = _next_table(_values(second), 60)
        self.first_hour = self._hours[0]
        self.first_minute = self._minutes[0]
        self.first_second = self._seconds[0]
        self._cache: dict[int, int] = {}

    # -- dates --------------------------------------------------------------------------

    def _next_year(self, year: int) -> int:
        """The first allowed year >= ``year``, or -1."""
        if year > MAX_YEAR:
            return -1
        if self._all_years:
            return max(year, MIN_YEAR)
        best = -1
        for first, last, step in self._year_ranges:
            if year <= first:
                candidate = first
            elif year > last:
                continue
            else:
                candidate = first + -(-(year - first) // step) * step
                if candidate > last:
                    continue
            if best < 0 or candidate < best:
                best = candidate
        return best

    def _month_mask(self, year: int, month: int) -> int:
        """Bit d set for each matching day d of the month."""
        key = year * 16 + month
        mask = self._cache.get(key)
        if mask is not None:
            return mask
        length = _month_length(year, month)
        first = date(year, month, 1).weekday()
        in_month = (1 << (length + 1)) - 2
        last_weekday = (first + length - 1) % 7
        day_side = self._day_mask
        if self._day_last:
            day_side |= 1 << length
        for n, weekday in self._day_nth:
            day_side |= 1 << (1 + (weekday - first) % 7 + 7 * (n - 1))
        for weekday in self._day_last_weekdays:
            day_side |= 1 << (length - (last_weekday - weekday) % 7)
        dow_side = self._dow_masks[first]
        for n, weekday in self._dow_nth:
            dow_side |= 1 << (1 + (weekday - first) % 7 + 7 * (n - 1))
        for weekday in self._dow_last_weekdays:
            dow_side |= 1 << (length - (last_weekday - weekday) % 7)
        mask = (day_side | dow_side) if self._day_or else (day_side & dow_side)
        if self._weeks is not None:
            mask &= self._week_mask(year, month, first, length)
        mask &= in_month
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = mask
        return mask

    def _week_mask(self, year: int, month: int, first: int, length: int) -> int:
        weeks = self._weeks
        assert weeks is not None
        mask = 0
        d = 1
        while d <= length:
            end = d + 6 - (first + d - 1) % 7  # the Sunday ending d's ISO week
            if date(year, month, d).isocalendar()[1] in weeks:
                mask |= ((1 << (min(end, length) + 1)) - 1) ^ ((1 << d) - 1)
            d = end + 1
        return mask

    def next_date(self, year: int, month: int, day: int) -> tuple[int, int, int] | None:
        """The first matching date on or after the given one (``day`` may be 32).

        Returns:
            ``(year, month, day)``, or ``None`` when no allowed year is left.
        """
        months = self._months
        start_year = -1
        while True:
            found = self._next_year(year)
            if found < 0:
                return None
            if found != year:
                year, month, day = found, 1, 1
            if start_year < 0:
                start_year = year
            elif self._all_years and year - start_year > _CYCLE_YEARS:
                return None
            next_month = months[month]
            if next_month < 0:
                year, month, day = year + 1, 1, 1
                continue
            if next_month != month:
                month, day = next_month, 1
            mask = self._month_mask(year, month) >> day
            if mask:
                return (year, month, day + (mask & -mask).bit_length() - 1)
            month += 1
            day = 1
            if month > 12:
                year, month = year + 1, 1

    # -- time of day --------------------------------------------------------------------

    def next_time(self, hour: int, minute: int, second: int) -> tuple[int, int, int] | None:
        """The first matching time of day at or after the given one, or ``None``."""
        hours = self._hours
        found_hour = hours[hour]
        if found_hour < 0:
            return None
        if found_hour == hour:
            minutes = self._minutes
            found_minute = minutes[minute]
            if found_minute == minute:
                found_second = self._seconds[second]
                if found_second >= 0:
                    return (hour, minute, found_second)
                found_minute = minutes[minute + 1]
            if found_minute >= 0:
                return (hour, found_minute, self.first_second)
            found_hour = hours[hour + 1]
            if found_hour < 0:
                return None
        return (found_hour, self.first_minute, self.first_second)

    def next_fields(
        self, year: int, month: int, day: int, hour: int, minute: int, second: int
    ) -> tuple[int, int, int, int, int, int] | None:
        """The first matching wall time at or after the given one, as six integers.

        ``second`` may be 60 (the start of the next minute): callers ask for "strictly
        after h:m:s" as "at or after h:m:s+1".

        Returns:
            ``(year, month, day, hour, minute, second)``, or ``None`` after year 9999.
        """
        found = self.next_date(year, month, day)
        if found is None:
            return None
        if found[2] == day and found[1] == month and found[0] == year:
            time = self.next_time(hour, minute, second)
            if time is not None:
                return (year, month, day, *time)
            found = self.next_date(year, month, day + 1)
            if found is None:
                return None
        return (*found, self.first_hour, self.first_minute, self.first_second)

    def next_wall(self, start: datetime) -> datetime | None:
        """The first matching wall time at or after ``start`` (naive), or ``None``.

        Microseconds of ``start`` are ignored: fire times are whole seconds.
        """
        found = self.next_fields(
            start.year, start.month, start.day, start.hour, start.minute, start.second
        )
        return None if found is None else datetime(*found)

    def matches(self, wall: datetime) -> bool:
        """Whether ``wall`` (naive, whole seconds) matches every field."""
        return self.next_wall(wall) == wall
