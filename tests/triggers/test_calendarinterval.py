from __future__ import annotations

import calendar
import json
import time as clock
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from horae import TriggerError
from horae.triggers.calendarinterval import CalendarIntervalTrigger

from .strategies import zone_names, zones

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")


def _fires(trigger: CalendarIntervalTrigger, after: datetime, count: int) -> list[str]:
    out = []
    t: datetime | None = after
    for _ in range(count):
        assert t is not None
        t = trigger.next(t)
        if t is None:
            break
        out.append(t.isoformat())
    return out


def test_monthly_from_the_31st_skips_short_months() -> None:
    trigger = CalendarIntervalTrigger(months=1, hour=9, start_date="2026-01-31", timezone="UTC")
    assert [f[:10] for f in _fires(trigger, datetime(2026, 1, 1, tzinfo=UTC), 5)] == [
        "2026-01-31",
        "2026-03-31",
        "2026-05-31",
        "2026-07-31",
        "2026-08-31",
    ]


def test_yearly_from_february_29() -> None:
    trigger = CalendarIntervalTrigger(years=1, start_date=date(2096, 2, 29), timezone="UTC")
    assert [f[:10] for f in _fires(trigger, datetime(2096, 3, 1, tzinfo=UTC), 2)] == [
        "2104-02-29",
        "2108-02-29",
    ]


def test_datetime_start_excludes_earlier_occurrence_on_its_date() -> None:
    trigger = CalendarIntervalTrigger(
        days=1, hour=9, start_date="2026-03-10T10:00:00", timezone=PARIS
    )
    assert _fires(trigger, datetime(2026, 3, 1, tzinfo=UTC), 1) == ["2026-03-11T09:00:00+01:00"]


def test_date_start_fires_on_its_date_even_if_earlier_in_the_day() -> None:
    trigger = CalendarIntervalTrigger(days=1, hour=0, start_date="2026-03-10", timezone=PARIS)
    assert _fires(trigger, datetime(2026, 3, 1, tzinfo=UTC), 1) == ["2026-03-10T00:00:00+01:00"]


def test_aware_start_anchors_on_its_local_date() -> None:
    trigger = CalendarIntervalTrigger(
        weeks=1, hour=23, start_date="2026-03-10T00:00:00+00:00", timezone="America/New_York"
    )
    # Anchored on 2026-03-09 (New York), 23:00 there is after the start instant.
    assert _fires(trigger, datetime(2026, 3, 1, tzinfo=UTC), 1) == ["2026-03-09T23:00:00-04:00"]


def test_date_end_includes_the_whole_day() -> None:
    trigger = CalendarIntervalTrigger(
        days=1, hour=23, start_date="2026-01-01", end_date="2026-01-02", timezone="UTC"
    )
    assert _fires(trigger, datetime(2026, 1, 1, tzinfo=UTC), 5) == [
        "2026-01-01T23:00:00+00:00",
        "2026-01-02T23:00:00+00:00",
    ]


def test_datetime_end_is_inclusive() -> None:
    trigger = CalendarIntervalTrigger(
        days=1, hour=9, start_date="2026-01-01", end_date="2026-01-02T09:00:00", timezone="UTC"
    )
    assert len(_fires(trigger, datetime(2026, 1, 1, tzinfo=UTC), 5)) == 2


def test_far_future_is_fast_and_correct() -> None:
    trigger = CalendarIntervalTrigger(days=1, hour=9, start_date="2000-01-01", timezone=PARIS)
    began = clock.perf_counter()
    fire = trigger.next(datetime(9000, 6, 1, 12, tzinfo=UTC))
    assert clock.perf_counter() - began < 0.05
    assert fire is not None
    assert fire.isoformat() == "9000-06-02T09:00:00+02:00"
    monthly = CalendarIntervalTrigger(months=1, start_date="2000-01-31", timezone="UTC")
    assert _fires(monthly, datetime(8000, 2, 1, tzinfo=UTC), 1) == ["8000-03-31T00:00:00+00:00"]


def test_exhausted_past_year_9999() -> None:
    trigger = CalendarIntervalTrigger(years=1, start_date="2000-02-29", timezone="UTC")
    assert _fires(trigger, datetime(9990, 1, 1, tzinfo=UTC), 5) == [
        "9992-02-29T00:00:00+00:00",
        "9996-02-29T00:00:00+00:00",
    ]
    assert trigger.next(datetime(9999, 12, 31, tzinfo=UTC)) is None


def test_start_date_none_is_today_in_the_zone() -> None:
    trigger = CalendarIntervalTrigger(days=1, timezone="Pacific/Chatham")
    assert trigger.start_date in (
        datetime.now(ZoneInfo("Pacific/Chatham")).date(),
        datetime.now(ZoneInfo("Pacific/Chatham")).date() - timedelta(days=1),
    )
    assert type(trigger.start_date) is date


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({}, "interval", "years, months, weeks, days"),
        ({"months": -1}, "months", "-1"),
        ({"days": 1.5}, "days", "1.5"),
        ({"days": True}, "days", "True"),
        ({"days": 1, "hour": 24}, "hour", "0..23"),
        ({"days": 1, "minute": 60}, "minute", "60"),
        ({"days": 1, "second": -1}, "second", "-1"),
        ({"days": 1, "hours": 3}, "hours", "did you mean 'hour'?"),
        ({"months": 1, "start_date": "2026-13-01"}, "start_date", "2026-13-01"),
        ({"days": 1, "end_date": "2025-12-31"}, "end_date", "'2025-12-31'"),
        ({"days": 1, "end_date": "2025-12-31T23:59:59"}, "end_date", "2025-12-31T23:59:59"),
        ({"days": 1, "timezone": "Europe/Pariss"}, "timezone", "Europe/Pariss"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], field: str, shown: str) -> None:
    kwargs.setdefault("start_date", "2026-01-01")
    kwargs.setdefault("timezone", "UTC")
    with pytest.raises(TriggerError) as info:
        CalendarIntervalTrigger(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)
    assert shown in str(info.value)


def test_end_on_the_start_date_is_allowed() -> None:
    trigger = CalendarIntervalTrigger(
        days=1, hour=9, start_date="2026-01-01T10:00", end_date="2026-01-01", timezone="UTC"
    )
    assert trigger.next(datetime(2025, 1, 1, tzinfo=UTC)) is None


@pytest.mark.parametrize(
    ("kwargs", "text"),
    [
        (
            {"months": 2, "hour": 9, "start_date": "2026-01-31", "timezone": "Europe/Paris"},
            "every 2 months on day 31 at 09:00 (Europe/Paris) from 2026-01-31",
        ),
        (
            {"years": 1, "hour": 6, "start_date": "2024-02-29", "timezone": "UTC"},
            "every year on Feb 29 at 06:00 (UTC) from 2024-02-29",
        ),
        (
            {"weeks": 2, "hour": 9, "second": 30, "start_date": "2026-03-01", "timezone": "UTC"},
            "every 2 weeks on Sunday at 09:00:30 (UTC) from 2026-03-01",
        ),
        (
            {
                "months": 1,
                "days": 1,
                "start_date": "2026-01-30T08:00",
                "end_date": "2026-12-31",
                "timezone": "UTC",
            },
            "every 1 month and 1 day at 00:00 (UTC) from 2026-01-30 08:00 UTC until 2026-12-31",
        ),
        (
            {"days": 1, "start_date": "2026-01-30", "timezone": "UTC"},
            "every day at 00:00 (UTC) from 2026-01-30",
        ),
    ],
)
def test_describe(kwargs: dict[str, object], text: str) -> None:
    assert CalendarIntervalTrigger(**kwargs).describe() == text  # type: ignore[arg-type]


def test_repr_and_dict() -> None:
    trigger = CalendarIntervalTrigger(
        months=2, hour=9, start_date="2026-01-31", timezone="Europe/Paris"
    )
    assert repr(trigger) == (
        "CalendarIntervalTrigger(months=2, hour=9, start_date='2026-01-31', "
        "timezone='Europe/Paris')"
    )
    assert trigger.to_dict() == {
        "kind": "calendarinterval",
        "months": 2,
        "hour": 9,
        "start_date": "2026-01-31",
        "timezone": "Europe/Paris",
    }


def test_date_and_midnight_datetime_starts_differ() -> None:
    as_date = CalendarIntervalTrigger(days=1, start_date="2026-01-01", timezone="UTC")
    as_datetime = CalendarIntervalTrigger(days=1, start_date="2026-01-01T00:00", timezone="UTC")
    assert as_date != as_datetime
    assert CalendarIntervalTrigger.from_dict(as_datetime.to_dict()) == as_datetime
    assert CalendarIntervalTrigger.from_dict(as_date.to_dict()) == as_date


# --- properties against a slow reference ---------------------------------------------


def _reference_next(trigger: CalendarIntervalTrigger, after: datetime) -> datetime | None:
    """Walk the series from its anchor, one occurrence at a time (vectors rule 7)."""
    tz = trigger.timezone
    start = trigger.start_date
    anchor = start.astimezone(tz).date() if isinstance(start, datetime) else start
    end = trigger.end_date
    at = time(trigger.hour, trigger.minute, trigger.second)
    k = 0
    while True:
        months = anchor.month - 1 + k * (12 * trigger.years + trigger.months)
        year = anchor.year + months // 12
        month = months % 12 + 1
        k += 1
        if year > 9999:
            return None
        if anchor.day > calendar.monthrange(year, month)[1]:
            continue
        day = date(year, month, anchor.day) + timedelta(
            days=(k - 1) * (7 * trigger.weeks + trigger.days)
        )
        # fold=0 reads a skipped wall time with the offset before the gap, a repeated
        # one as its first occurrence.
        fire = datetime.combine(day, at).replace(tzinfo=tz, fold=0).astimezone(UTC)
        if isinstance(end, datetime) and fire > end:
            return None
        if end is not None and not isinstance(end, datetime) and day > end:
            return None
        if isinstance(start, datetime) and fire < start:
            continue
        if fire > after:
            return fire


periods = st.fixed_dictionaries(
    {},
    optional={
        "years": st.integers(0, 2),
        "months": st.integers(0, 14),
        "weeks": st.integers(0, 3),
        "days": st.integers(0, 40),
    },
)
starts = st.dates(date(1995, 1, 1), date(2060, 12, 31)) | st.datetimes(
    datetime(1995, 1, 1), datetime(2060, 12, 31), timezones=zones
)


@settings(max_examples=150, deadline=None)
@given(
    periods=periods,
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
    second=st.integers(0, 59),
    start=starts,
    zone=zone_names,
    after_days=st.integers(-400, 365 * 12),
    after_seconds=st.integers(0, 86399),
    end_days=st.none() | st.integers(1, 365 * 15),
    end_as_date=st.booleans(),
)
def test_properties(
    periods: dict[str, int],
    hour: int,
    minute: int,
    second: int,
    start: date | datetime,
    zone: str,
    after_days: int,
    after_seconds: int,
    end_days: int | None,
    end_as_date: bool,
) -> None:
    assume(any(periods.values()))
    start_day = start.date() if isinstance(start, datetime) else start
    end: date | datetime | None = None
    if end_days is not None:
        end = start_day + timedelta(days=end_days)
        if not end_as_date:
            end = datetime.combine(end, time(12), tzinfo=UTC)
    trigger = CalendarIntervalTrigger(
        **periods,
        hour=hour,
        minute=minute,
        second=second,
        start_date=start,
        end_date=end,
        timezone=zone,
    )
    assert CalendarIntervalTrigger.from_dict(json.loads(json.dumps(trigger.to_dict()))) == trigger

    after = datetime.combine(start_day, time(), tzinfo=UTC) + timedelta(
        days=after_days, seconds=after_seconds
    )
    for _ in range(4):
        fire = trigger.next(after)
        expected = _reference_next(trigger, after.astimezone(UTC))
        if expected is None:
            assert fire is None
            return
        assert fire is not None
        assert fire.astimezone(UTC) == expected
        assert fire > after
        assert fire.utcoffset() == expected.astimezone(ZoneInfo(zone)).utcoffset()
        after = fire
