"""Property tests for CronTrigger against an independent matcher.

Expressions are generated from a structure (values, ranges, steps, "last fri", "5#3"),
so the test knows which wall times match without using horae's parser. Checked, in the
zones with the hardest DST changes:

- fire times strictly increase, are expressed with the offset in force, and each one is
  a matching wall time, or a matching wall time skipped by a spring-forward and moved
  later by the gap (vectors rule 8);
- no matching wall time is missed: between ``after`` and the first fire time, and
  between consecutive fire times, no matching wall time maps to an instant (checked
  when the enumeration is small);
- ``from_dict(to_dict(t)) == t``;
- ``from_crontab`` on random text raises only ``TriggerError``/``TypeError`` and never
  hangs.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from functools import cache
from itertools import product
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from horae import TriggerError
from horae.triggers.cron import CronTrigger

UTC = timezone.utc
ZONES = [
    "UTC",
    "Europe/London",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "America/Havana",
]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
SUNDAY_FIRST = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
ORDINALS = ["1st", "2nd", "3rd", "4th", "5th"]

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)

# A field as the test understands it: plain values plus predicates on a date.
DatePredicate = Callable[[date], bool]


class Field:
    """What one generated field matches."""

    def __init__(self, text: str, values: set[int], dates: list[DatePredicate]) -> None:
        self.text = text
        self.values = values
        self.dates = dates

    def has(self, value: int) -> bool:
        return value in self.values

    def has_day(self, day: date) -> bool:
        return day.day in self.values or any(p(day) for p in self.dates)

    def has_day_of_week(self, day: date) -> bool:
        """For weekday fields: values are weekdays with 0 = Monday (plus 5#3 / 5L)."""
        return day.weekday() in self.values or any(p(day) for p in self.dates)


def _last_day(d: date) -> bool:
    return d.day == calendar.monthrange(d.year, d.month)[1]


def _last_weekday(weekday: int) -> DatePredicate:
    return lambda d: d.weekday() == weekday and d.day + 7 > calendar.monthrange(d.year, d.month)[1]


def _nth_weekday(n: int, weekday: int) -> DatePredicate:
    return lambda d: d.weekday() == weekday and (d.day - 1) // 7 == n - 1


@st.composite
def _numeric_item(
    draw: st.DrawFn,
    low: int,
    high: int,
    names: list[str] | None = None,
    open_high: int = -1,
    near: tuple[int, int] | None = None,
) -> tuple[str, set[int]]:
    """One list item and its values; ``near`` narrows the values drawn (not the field)."""
    open_high = high if open_high < 0 else open_high
    pick_low, pick_high = near or (low, high)

    def name(v: int) -> str:
        if names is not None and v < len(names) + low and draw(st.booleans()):
            text = names[v - low]
            return text.upper() if draw(st.booleans()) else text
        return str(v)

    kind = draw(st.sampled_from(["star", "step", "value", "range", "range_step", "from"]))
    step = draw(st.integers(1, max(1, pick_high - pick_low + 3)))
    if kind == "star":
        return "*", set(range(low, open_high + 1))
    if kind == "step":
        return f"*/{step}", set(range(low, open_high + 1, step))
    a = draw(st.integers(pick_low, pick_high))
    if kind == "value":
        return name(a), {a}
    if kind == "from":
        return f"{name(a)}/{step}", set(range(a, max(a, open_high) + 1, step))
    b = draw(st.integers(a, pick_high))
    if kind == "range":
        return f"{name(a)}-{name(b)}", set(range(a, b + 1))
    return f"{name(a)}-{name(b)}/{step}", set(range(a, b + 1, step))


@st.composite
def _field(
    draw: st.DrawFn, item: st.SearchStrategy[tuple[str, set[int], list[DatePredicate]]]
) -> Field:
    parts = draw(st.lists(item, min_size=1, max_size=3))
    values: set[int] = set()
    dates: list[DatePredicate] = []
    for _, v, d in parts:
        values |= v
        dates += d
    return Field(",".join(p[0] for p in parts), values, dates)


def _plain(
    low: int, high: int, names: list[str] | None = None, near: tuple[int, int] | None = None
) -> Any:
    return _numeric_item(low, high, names, near=near).map(lambda x: (x[0], x[1], []))


@st.composite
def _keyword_day_item(draw: st.DrawFn) -> tuple[str, set[int], list[DatePredicate]]:
    kind = draw(st.sampled_from(["plain", "plain", "last", "lastwd", "nth"]))
    if kind == "plain":
        plain: tuple[str, set[int], list[DatePredicate]] = draw(_plain(1, 31))
        return plain
    if kind == "last":
        return "last", set(), [_last_day]
    weekday = draw(st.integers(0, 6))
    if kind == "lastwd":
        return f"last {WEEKDAYS[weekday]}", set(), [_last_weekday(weekday)]
    n = draw(st.integers(1, 5))
    return f"{ORDINALS[n - 1]} {WEEKDAYS[weekday]}", set(), [_nth_weekday(n, weekday)]


KEYWORD_FIELDS: dict[str, Any] = {
    "year": _field(_plain(1970, 9999, near=(2024, 2040))),
    "month": _field(_plain(1, 12, MONTHS)),
    "day": _field(_keyword_day_item()),
    "week": _field(_plain(1, 53)),
    "day_of_week": _field(_plain(0, 6, WEEKDAYS)),
    "hour": _field(_plain(0, 23)),
    "minute": _field(_plain(0, 59)),
    "second": _field(_plain(0, 59)),
}
ORDER = list(KEYWORD_FIELDS)
DEFAULTS = {"month": {1}, "day": {1}, "hour": {0}, "minute": {0}, "second": {0}}
FULL = {
    "year": set(range(1970, 10000)),
    "month": set(range(1, 13)),
    "day": set(range(1, 32)),
    "week": set(range(1, 54)),
    "day_of_week": set(range(7)),
    "hour": set(range(24)),
    "minute": set(range(60)),
    "second": set(range(60)),
}


class Spec:
    """The generated trigger and the matcher that goes with it."""

    def __init__(self, fields: dict[str, Field], day_or: bool) -> None:
        self.fields = fields
        self.day_or = day_or
        self._times: list[tuple[int, int, int]] | None = None

    def date_matches(self, d: date) -> bool:
        f = self.fields
        if not (f["year"].has(d.year) and f["month"].has(d.month)):
            return False
        if not f["week"].has(d.isocalendar()[1]):
            return False
        day, weekday = f["day"].has_day(d), f["day_of_week"].has_day_of_week(d)
        return (day or weekday) if self.day_or else (day and weekday)

    def times(self) -> list[tuple[int, int, int]]:
        if self._times is None:
            f = self.fields
            self._times = list(
                product(
                    sorted(f["hour"].values), sorted(f["minute"].values), sorted(f["second"].values)
                )
            )
        return self._times

    def matches(self, wall: datetime) -> bool:
        f = self.fields
        return (
            self.date_matches(wall.date())
            and f["hour"].has(wall.hour)
            and f["minute"].has(wall.minute)
            and f["second"].has(wall.second)
        )


def _fixed_field(text: str, values: set[int]) -> Field:
    return Field(text, values, [])


@st.composite
def keyword_triggers(draw: st.DrawFn) -> tuple[CronTrigger, Spec]:
    chosen = draw(st.sets(st.sampled_from(ORDER), min_size=1, max_size=5))
    fields: dict[str, Field] = {}
    args: dict[str, Any] = {}
    last = max(ORDER.index(name) for name in chosen)
    for i, name in enumerate(ORDER):
        if name in chosen:
            field = draw(KEYWORD_FIELDS[name])
            args[name] = (
                int(field.text) if field.text.isdigit() and draw(st.booleans()) else field.text
            )
        elif i < last or name in ("week", "day_of_week"):
            field = _fixed_field("*", FULL[name])
        else:
            field = _fixed_field(str(min(DEFAULTS[name])), DEFAULTS[name])
        fields[name] = field
    zone = draw(st.sampled_from(ZONES))
    return CronTrigger(**args, timezone=zone), Spec(fields, day_or=False)


@st.composite
def _crontab_weekday_item(draw: st.DrawFn) -> tuple[str, set[int], list[DatePredicate]]:
    kind = draw(st.sampled_from(["plain", "plain", "plain", "nth", "last"]))
    if kind == "plain":
        text, values = draw(_numeric_item(0, 7, SUNDAY_FIRST, open_high=6))
        if text.lower().endswith("-sun"):
            values = values | {7}  # "fri-sun": Sunday ending a range is 7
        return text, {(v + 6) % 7 for v in values}, []
    weekday = draw(st.integers(0, 7))
    name = str(weekday) if draw(st.booleans()) else SUNDAY_FIRST[weekday % 7]
    monday_first = (weekday + 6) % 7
    if kind == "last":
        return f"{name}L", set(), [_last_weekday(monday_first)]
    n = draw(st.integers(1, 5))
    return f"{name}#{n}", set(), [_nth_weekday(n, monday_first)]


@st.composite
def _crontab_day_item(draw: st.DrawFn) -> tuple[str, set[int], list[DatePredicate]]:
    if draw(st.integers(0, 4)) == 0:
        return "L", set(), [_last_day]
    plain: tuple[str, set[int], list[DatePredicate]] = draw(_plain(1, 31))
    return plain


@st.composite
def crontab_triggers(draw: st.DrawFn) -> tuple[CronTrigger, Spec]:
    minute = draw(_field(_plain(0, 59)))
    hour = draw(_field(_plain(0, 23)))
    day = draw(st.one_of(st.just(_fixed_field("*", FULL["day"])), _field(_crontab_day_item())))
    month = draw(_field(_plain(1, 12, MONTHS)))
    weekday = draw(
        st.one_of(st.just(_fixed_field("*", set(range(7)))), _field(_crontab_weekday_item()))
    )
    spaces = draw(st.sampled_from([" ", "  ", "\t", " \t "]))
    expr = spaces.join(f.text for f in (minute, hour, day, month, weekday))
    fields = {
        "year": _fixed_field("*", FULL["year"]),
        "month": month,
        "day": day,
        "week": _fixed_field("*", FULL["week"]),
        "day_of_week": weekday,
        "hour": hour,
        "minute": minute,
        "second": _fixed_field("0", {0}),
    }
    zone = draw(st.sampled_from(ZONES))
    day_or = day.text != "*" and weekday.text != "*"
    return CronTrigger.from_crontab(expr, timezone=zone), Spec(fields, day_or)


afters = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)
triggers = st.one_of(keyword_triggers(), crontab_triggers())


def _localize(wall: datetime, tz: ZoneInfo) -> datetime:
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def _in_gap(wall: datetime, tz: ZoneInfo) -> bool:
    first = wall.replace(tzinfo=tz, fold=0).utcoffset()
    second = wall.replace(tzinfo=tz, fold=1).utcoffset()
    assert first is not None
    assert second is not None
    return first < second


def _explained(fired: datetime, spec: Spec, tz: ZoneInfo) -> bool:
    """A fire time is a matching wall time, or a matching gap wall moved by the gap."""
    wall = fired.astimezone(tz).replace(tzinfo=None)
    if spec.matches(wall) and _localize(wall, tz) == fired:
        return True
    for minutes in range(15, 24 * 60 + 1, 15):
        earlier = wall - timedelta(minutes=minutes)
        if _in_gap(earlier, tz) and spec.matches(earlier) and _localize(earlier, tz) == fired:
            return True
    return False


def _instants_between(
    spec: Spec, tz: ZoneInfo, low: datetime, high: datetime, budget: int = 10_000
) -> list[datetime] | None:
    """Every matching wall time that maps into the open interval (low, high), by brute
    force over the days (and the matching times of matching days); ``None`` when that is
    more work than ``budget``."""
    times = spec.times()
    found = []
    day = (low.astimezone(tz) - timedelta(days=2)).date()
    last = (high.astimezone(tz) + timedelta(days=2)).date()
    if (last - day).days > budget:
        return None
    budget -= (last - day).days
    while day <= last:
        if spec.date_matches(day):
            budget -= len(times)
            if budget < 0:
                return None
            for h, m, s in times:
                instant = _localize(datetime(day.year, day.month, day.day, h, m, s), tz)
                if low < instant < high:
                    found.append(instant)
        day += timedelta(days=1)
    return found


@cache
def _transitions(zone: str) -> list[datetime]:
    """The UTC instants (to the minute) when ``zone`` changed offset in 2025..2030."""
    tz = ZoneInfo(zone)
    found = []
    t = datetime(2025, 1, 1, tzinfo=UTC)
    end = datetime(2031, 1, 1, tzinfo=UTC)
    while t < end:
        nxt = t + timedelta(days=1)
        if t.astimezone(tz).utcoffset() != nxt.astimezone(tz).utcoffset():
            lo, hi = t, nxt
            while hi - lo > timedelta(minutes=1):
                mid = lo + (hi - lo) / 2
                if mid.astimezone(tz).utcoffset() == lo.astimezone(tz).utcoffset():
                    lo = mid
                else:
                    hi = mid
            found.append(hi)
        t = nxt
    return found


@st.composite
def _after_for(draw: st.DrawFn, trigger: CronTrigger) -> datetime:
    """Mostly near one of the zone's DST changes; sometimes anywhere."""
    changes = _transitions(trigger.timezone.key)
    if not changes or draw(st.integers(0, 3)) == 0:
        return draw(afters)
    change = draw(st.sampled_from(changes))
    shift = draw(st.integers(-6 * 3600 * 10**6, 3 * 3600 * 10**6))
    return change + timedelta(microseconds=shift)


@PROPERTY_SETTINGS
@given(st.data())
def test_fire_times_increase_and_match(data: st.DataObject) -> None:
    trigger, spec = data.draw(triggers, label="trigger")
    after = data.draw(_after_for(trigger), label="after")
    tz = trigger.timezone
    previous = after
    for _ in range(12):
        fired = trigger.next(previous)
        if fired is None:
            break
        assert fired > previous, (fired, previous)
        assert fired.utcoffset() == fired.astimezone(tz).utcoffset()
        assert _explained(fired, spec, tz), f"{fired} does not match {trigger!r}"
        missed = _instants_between(spec, tz, previous, fired)
        assert not missed, f"{trigger!r} after {previous} skipped {missed[:3]} for {fired}"
        previous = fired


@PROPERTY_SETTINGS
@given(triggers)
def test_dict_round_trip(case: tuple[CronTrigger, Spec]) -> None:
    trigger, _ = case
    assert CronTrigger.from_dict(trigger.to_dict()) == trigger


@PROPERTY_SETTINGS
@given(triggers, afters, st.sampled_from(["Asia/Tokyo", "America/Los_Angeles", "UTC"]))
def test_after_offset_does_not_matter(
    case: tuple[CronTrigger, Spec], after: datetime, zone: str
) -> None:
    trigger, _ = case
    assert trigger.next(after) == trigger.next(after.astimezone(ZoneInfo(zone)))


CRONTAB_ALPHABET = st.sampled_from([*"0123456789*/-,#LlW? @\t", "mon", "jan", "sun", "fri"])


@settings(max_examples=300, deadline=timedelta(milliseconds=500))
@given(st.one_of(st.text(max_size=40), st.lists(CRONTAB_ALPHABET, max_size=30).map("".join)))
def test_from_crontab_fuzz(expr: str) -> None:
    try:
        trigger = CronTrigger.from_crontab(expr, timezone="Europe/London")
    except (TriggerError, TypeError):
        return
    fired = trigger.next(datetime(2026, 3, 29, 0, 30, tzinfo=UTC))
    assume(fired is not None)
    assert fired is not None
    assert fired > datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
