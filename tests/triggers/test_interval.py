from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from horae import TriggerError
from horae.triggers.interval import IntervalTrigger

from .strategies import aware_datetimes, zone_names

UTC = timezone.utc
LONDON = ZoneInfo("Europe/London")


def _utc(value: datetime | None) -> datetime:
    assert value is not None
    return value.astimezone(UTC)


def test_fires_at_start_then_every_interval() -> None:
    trigger = IntervalTrigger(minutes=10, start_date="2026-01-01T00:00:00+00:00", timezone="UTC")
    before = datetime(2025, 12, 31, 23, 59, tzinfo=UTC)
    assert trigger.next(before) == datetime(2026, 1, 1, tzinfo=UTC)
    assert trigger.next(datetime(2026, 1, 1, tzinfo=UTC)) == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    assert trigger.next(datetime(2026, 1, 1, 0, 9, 59, 999999, tzinfo=UTC)) == datetime(
        2026, 1, 1, 0, 10, tzinfo=UTC
    )


def test_interval_is_elapsed_time_across_dst() -> None:
    trigger = IntervalTrigger(days=1, start_date="2026-03-28T12:00:00", timezone=LONDON)
    fire = trigger.next(datetime(2026, 3, 28, 12, tzinfo=LONDON))
    assert fire is not None
    assert fire.isoformat() == "2026-03-29T13:00:00+01:00"


def test_repeated_hour_fires_twice_and_results_stay_distinct() -> None:
    trigger = IntervalTrigger(minutes=30, start_date="2026-10-25T00:00:00+00:00", timezone=LONDON)
    a = trigger.next(datetime(2026, 10, 25, 0, 15, tzinfo=UTC))
    b = trigger.next(a)  # type: ignore[arg-type]
    c = trigger.next(b)  # type: ignore[arg-type]
    assert [x.isoformat() for x in (a, b, c)] == [  # type: ignore[union-attr]
        "2026-10-25T01:30:00+01:00",
        "2026-10-25T01:00:00+00:00",
        "2026-10-25T01:30:00+00:00",
    ]
    # Same wall time, different instants: they must not compare equal.
    assert a != c
    assert a < b < c  # type: ignore[operator]


def test_end_date_is_inclusive() -> None:
    trigger = IntervalTrigger(
        hours=1, start_date="2026-01-01 00:00", end_date="2026-01-01 02:00", timezone="UTC"
    )
    assert trigger.next(datetime(2026, 1, 1, 1, 30, tzinfo=UTC)) == datetime(
        2026, 1, 1, 2, tzinfo=UTC
    )
    assert trigger.next(datetime(2026, 1, 1, 2, tzinfo=UTC)) is None


def test_far_future_after_is_exact() -> None:
    trigger = IntervalTrigger(seconds=7, microseconds=3, start_date="2000-01-01", timezone="UTC")
    after = datetime(2900, 6, 1, 12, 0, 0, 1, tzinfo=UTC)
    fire = trigger.next(after)
    assert fire is not None
    assert fire > after
    assert (fire - trigger.start_date) % trigger.interval == timedelta(0)
    assert fire - trigger.interval <= after


def test_exhausted_past_year_9999() -> None:
    trigger = IntervalTrigger(weeks=1000, start_date="2000-01-01", timezone="UTC")
    assert trigger.next(datetime(9999, 1, 1, tzinfo=UTC)) is None


def test_start_date_none_is_construction_time() -> None:
    before = datetime.now(UTC)
    trigger = IntervalTrigger(seconds=5, timezone="UTC")
    after = datetime.now(UTC)
    assert before <= trigger.start_date <= after
    assert IntervalTrigger.from_dict(trigger.to_dict()) == trigger


def test_zone_defaults_to_the_start_dates_zone() -> None:
    trigger = IntervalTrigger(hours=1, start_date=datetime(2026, 1, 1, tzinfo=LONDON))
    assert trigger.timezone is LONDON


def test_floats_are_accepted() -> None:
    trigger = IntervalTrigger(seconds=1.5, start_date="2026-01-01", timezone="UTC")
    assert trigger.interval == timedelta(seconds=1.5)


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({}, "interval", "zero"),
        ({"seconds": 0}, "interval", "zero"),
        ({"seconds": -5}, "seconds", "-5"),
        ({"hours": "2"}, "hours", "'2'"),
        ({"hours": True}, "hours", "True"),
        ({"hours": float("nan")}, "hours", "nan"),
        ({"days": 10**12}, "interval", "timedelta"),
        ({"fortnights": 1}, "fortnights", "weeks, days, hours, minutes, seconds"),
        ({"minute": 1}, "minute", "did you mean 'minutes'"),
        ({"seconds": 5, "jitter": 2}, "jitter", "add_job"),
        ({"minutes": 5, "start_date": "yesterday"}, "start_date", "'yesterday'"),
        (
            {"minutes": 5, "start_date": "2026-01-02", "end_date": "2026-01-01"},
            "end_date",
            "'2026-01-01'",
        ),
        ({"minutes": 5, "timezone": 5}, "timezone", "5"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], field: str, shown: str) -> None:
    kwargs.setdefault("timezone", "UTC")
    with pytest.raises(TriggerError) as info:
        IntervalTrigger(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)
    assert shown in str(info.value)


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        IntervalTrigger(5)  # type: ignore[misc]


def test_repr_describe_and_dict() -> None:
    trigger = IntervalTrigger(minutes=5, start_date="2026-01-01", timezone="UTC")
    assert repr(trigger) == (
        "IntervalTrigger(minutes=5, start_date='2026-01-01T00:00:00+00:00', timezone='UTC')"
    )
    assert trigger.describe() == "every 5 minutes from 2026-01-01 00:00 UTC"
    assert trigger.to_dict() == {
        "kind": "interval",
        "minutes": 5,
        "start_date": "2026-01-01T00:00:00+00:00",
        "timezone": "UTC",
    }
    other = IntervalTrigger(
        hours=1,
        minutes=30,
        start_date="2026-01-01 09:00:30",
        end_date="2026-02-01",
        timezone="Europe/Paris",
    )
    assert other.describe() == (
        "every 1 hour and 30 minutes from 2026-01-01 09:00:30 CET until 2026-02-01 00:00 CET"
    )
    assert IntervalTrigger(hours=1, start_date="2026-01-01", timezone="UTC").describe() == (
        "every hour from 2026-01-01 00:00 UTC"
    )


def test_value_semantics() -> None:
    a = IntervalTrigger(minutes=5, start_date="2026-01-01T01:00:00+01:00", timezone="UTC")
    b = IntervalTrigger(minutes=5, start_date="2026-01-01T00:00:00", timezone="UTC")
    assert a == b
    assert hash(a) == hash(b)
    assert a != IntervalTrigger(seconds=300, start_date="2026-01-01", timezone="UTC")


def test_fall_back_start_dates_are_not_equal() -> None:
    # Same wall time in the repeated hour, one hour apart as instants.
    first = IntervalTrigger(hours=1, start_date="2026-10-25T01:30:00+01:00", timezone=LONDON)
    second = IntervalTrigger(hours=1, start_date="2026-10-25T01:30:00+00:00", timezone=LONDON)
    assert first != second
    assert IntervalTrigger.from_dict(second.to_dict()) == second


parts = st.fixed_dictionaries(
    {},
    optional={
        "weeks": st.integers(0, 3),
        "days": st.integers(0, 10),
        "hours": st.integers(0, 30) | st.floats(0, 30, allow_nan=False),
        "minutes": st.integers(0, 120),
        "seconds": st.integers(0, 3600) | st.floats(0, 100, allow_nan=False),
        "microseconds": st.integers(0, 10**6),
    },
)


@settings(max_examples=150, deadline=None)
@given(
    parts=parts,
    start=aware_datetimes,
    zone=zone_names,
    after=aware_datetimes,
    end_offset=st.none() | st.integers(0, 10**6),
)
def test_properties(
    parts: dict[str, float],
    start: datetime,
    zone: str,
    after: datetime,
    end_offset: int | None,
) -> None:
    interval = timedelta(**parts)
    assume(interval > timedelta(0))
    end = None if end_offset is None else _utc(start) + timedelta(seconds=end_offset)
    trigger = IntervalTrigger(**parts, start_date=start, end_date=end, timezone=zone)
    assert IntervalTrigger.from_dict(json.loads(json.dumps(trigger.to_dict()))) == trigger

    previous = after
    for _ in range(5):
        fire = trigger.next(previous)
        if fire is None:
            assert end is not None
            break
        assert _utc(fire) > _utc(previous)
        assert _utc(fire) >= _utc(start)
        assert (_utc(fire) - _utc(start)) % interval == timedelta(0)
        # Nothing fires in between: the one before is not after ``previous``.
        assert _utc(fire) - interval <= _utc(previous) or _utc(fire) == _utc(start)
        assert fire.utcoffset() == fire.astimezone(ZoneInfo(zone)).utcoffset()
        if end is not None:
            assert _utc(fire) <= _utc(end)
        previous = fire
