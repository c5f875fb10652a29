from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings

from horae import TriggerError
from horae.triggers.date import DateTrigger

from .strategies import aware_datetimes, zone_names

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")


def test_fires_once_then_is_exhausted() -> None:
    trigger = DateTrigger("2027-02-14 16:38:05", timezone="Europe/Paris")
    first = trigger.next(datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert first == datetime(2027, 2, 14, 15, 38, 5, tzinfo=timezone.utc)
    assert first is not None
    assert first.utcoffset() == timedelta(hours=1)
    assert trigger.next(first) is None


def test_next_is_strict_and_compares_instants() -> None:
    trigger = DateTrigger("2027-02-14T16:38:05+01:00", timezone="UTC")
    same_instant_elsewhere = datetime(2027, 2, 14, 10, 38, 5, tzinfo=NEW_YORK)
    assert trigger.next(same_instant_elsewhere) is None
    assert trigger.next(same_instant_elsewhere - timedelta(microseconds=1)) is not None


def test_naive_run_date_in_a_gap_fires_later_by_the_gap() -> None:
    trigger = DateTrigger(datetime(2026, 3, 8, 2, 30), timezone=NEW_YORK)
    fire = trigger.next(datetime(2026, 3, 8, tzinfo=NEW_YORK))
    assert fire is not None
    assert fire.isoformat() == "2026-03-08T03:30:00-04:00"


def test_repeated_hour_result_equals_the_first_occurrence() -> None:
    trigger = DateTrigger("2026-11-01T01:30:00", timezone="America/New_York")
    fire = trigger.next(datetime(2026, 11, 1, tzinfo=NEW_YORK))
    # A ZoneInfo datetime in the repeated hour would compare unequal to this.
    assert fire == datetime.fromisoformat("2026-11-01T01:30:00-04:00")
    assert fire is not None
    assert fire.tzname() == "EDT"


def test_a_date_is_midnight_in_the_zone() -> None:
    trigger = DateTrigger(date(2026, 5, 1), timezone="Europe/Paris")
    assert trigger.run_date == datetime(2026, 5, 1, tzinfo=PARIS)


def test_zone_defaults_to_the_run_dates_zone() -> None:
    trigger = DateTrigger(datetime(2026, 5, 1, 9, tzinfo=PARIS))
    assert trigger.timezone.key == "Europe/Paris"


def test_utc_timezone_object_is_read_as_the_utc_zone() -> None:
    assert DateTrigger("2026-05-01", timezone=timezone.utc).timezone.key == "UTC"


def test_fixed_offset_zone_is_refused() -> None:
    with pytest.raises(TriggerError) as info:
        DateTrigger("2026-05-01", timezone=timezone(timedelta(hours=2)))
    assert info.value.field == "timezone"
    assert "IANA" in str(info.value)


def test_after_must_be_aware() -> None:
    with pytest.raises(ValueError, match="after"):
        DateTrigger("2026-05-01", timezone="UTC").next(datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("kwargs", "field", "shown"),
    [
        ({}, "run_date", "run_date"),
        ({"run_date": ""}, "run_date", "''"),
        ({"run_date": "   "}, "run_date", "'   '"),
        ({"run_date": "soon"}, "run_date", "'soon'"),
        ({"run_date": "2026-02-30 10:00:00"}, "run_date", "2026-02-30 10:00:00"),
        ({"run_date": 1700000000}, "run_date", "1700000000"),
        ({"run_date": "2026-01-01", "timezone": "Mars/Olympus"}, "timezone", "Mars/Olympus"),
        ({"run_date": "2026-01-01", "run_time": "09:00"}, "run_time", "did you mean 'run_date'"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], field: str, shown: str) -> None:
    with pytest.raises(TriggerError) as info:
        DateTrigger(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert field in str(info.value)
    assert shown in str(info.value)


def test_repr_describe_and_dict() -> None:
    trigger = DateTrigger("2027-02-14 16:38:05", timezone="Europe/Paris")
    assert repr(trigger) == (
        "DateTrigger(run_date='2027-02-14T16:38:05+01:00', timezone='Europe/Paris')"
    )
    assert trigger.describe() == "once at 2027-02-14 16:38:05 CET"
    assert trigger.to_dict() == {
        "kind": "date",
        "run_date": "2027-02-14T16:38:05+01:00",
        "timezone": "Europe/Paris",
    }


def test_value_semantics() -> None:
    a = DateTrigger("2027-02-14 16:38:05", timezone="Europe/Paris")
    b = DateTrigger("2027-02-14T15:38:05+00:00", timezone="Europe/Paris")
    assert a == b
    assert hash(a) == hash(b)
    assert a != DateTrigger("2027-02-14 16:38:05", timezone="Europe/Berlin")
    with pytest.raises(AttributeError):
        a.run_date = b.run_date  # type: ignore[misc]


@settings(max_examples=150, deadline=None)
@given(run_date=aware_datetimes, zone=zone_names, after=aware_datetimes)
def test_round_trip_and_single_fire(run_date: datetime, zone: str, after: datetime) -> None:
    trigger = DateTrigger(run_date, timezone=zone)
    data = json.loads(json.dumps(trigger.to_dict()))
    assert DateTrigger.from_dict(data) == trigger
    fire = trigger.next(after)
    # Compare in UTC: ZoneInfo datetimes of one zone compare by wall time (PEP 495).
    if after.astimezone(timezone.utc) < run_date.astimezone(timezone.utc):
        assert fire is not None
        assert fire.astimezone(timezone.utc) == run_date.astimezone(timezone.utc)
        assert fire.utcoffset() == run_date.astimezone(ZoneInfo(zone)).utcoffset()
        assert trigger.next(fire) is None
    else:
        assert fire is None
