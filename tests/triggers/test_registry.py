from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from horae import TriggerError
from horae.triggers import (
    AndTrigger,
    CalendarIntervalTrigger,
    DateTrigger,
    IntervalTrigger,
    OrTrigger,
    Trigger,
    create_trigger,
    trigger_from_dict,
)

PARIS = ZoneInfo("Europe/Paris")


def test_create_interval_fills_the_default_timezone() -> None:
    trigger = create_trigger("interval", {"seconds": 5}, default_timezone=PARIS)
    assert isinstance(trigger, IntervalTrigger)
    assert trigger.seconds == 5
    assert trigger.timezone is PARIS


def test_an_explicit_timezone_wins_over_the_default() -> None:
    trigger = create_trigger(
        "date", {"run_date": "2026-03-08 02:30", "timezone": "America/New_York"}, PARIS
    )
    assert isinstance(trigger, DateTrigger)
    assert trigger.timezone.key == "America/New_York"


def test_naive_dates_are_read_in_the_default_timezone() -> None:
    trigger = create_trigger("date", {"run_date": "2026-07-01 09:00"}, default_timezone=PARIS)
    fire = trigger.next(datetime(2026, 1, 1, tzinfo=timezone.utc))
    assert fire == datetime(2026, 7, 1, 7, tzinfo=timezone.utc)


def test_unknown_alias_lists_the_known_ones() -> None:
    with pytest.raises(TriggerError) as info:
        create_trigger("intervall", {"seconds": 5})
    assert info.value.field == "trigger"
    message = str(info.value)
    assert "'intervall'" in message
    for alias in ("'and'", "'calendarinterval'", "'date'", "'interval'", "'or'"):
        assert alias in message


@pytest.mark.parametrize(
    ("alias", "kwargs", "field", "hint"),
    [
        ("interval", {"minuts": 5}, "minuts", "did you mean 'minutes'?"),
        ("calendarinterval", {"days": 1, "hours": 3}, "hours", "did you mean 'hour'?"),
        ("date", {"run_data": "2026-01-01"}, "run_data", "did you mean 'run_date'?"),
        ("and", {"trigger": []}, "trigger", "did you mean 'triggers'?"),
    ],
)
def test_unknown_argument_names_the_close_match(
    alias: str, kwargs: dict[str, Any], field: str, hint: str
) -> None:
    with pytest.raises(TriggerError) as info:
        create_trigger(alias, kwargs, default_timezone=PARIS)
    assert info.value.field == field
    assert hint in str(info.value)


def _examples() -> list[Any]:
    interval = IntervalTrigger(minutes=5, start_date="2026-01-01", timezone="UTC")
    date = DateTrigger("2027-02-14 16:38:05", timezone="Europe/Paris")
    examples: list[Any] = [
        date,
        interval,
        IntervalTrigger(
            hours=1.5,
            microseconds=7,
            start_date="2026-10-25T01:30:00+00:00",
            end_date="2027-01-01",
            timezone="Europe/London",
        ),
        CalendarIntervalTrigger(months=2, hour=9, start_date="2026-01-31", timezone=PARIS),
        CalendarIntervalTrigger(
            days=3,
            second=5,
            start_date="2026-01-31T10:00",
            end_date="2027-01-31",
            timezone="Pacific/Chatham",
        ),
        AndTrigger([interval, date]),
        OrTrigger([AndTrigger([interval]), date]),
    ]
    try:
        from horae.triggers.cron import CronTrigger
    except ImportError:  # CronTrigger is not there yet
        pass
    else:
        examples.append(CronTrigger(hour=9, timezone="Europe/Paris"))
        examples.append(OrTrigger([CronTrigger(minute="*/20", timezone="UTC"), interval]))
    return [pytest.param(t, id=type(t).__name__) for t in examples]


@pytest.mark.parametrize("trigger", _examples())
def test_trigger_from_dict_round_trip(trigger: Trigger) -> None:
    data = trigger.to_dict()
    assert data["kind"] == type(trigger).kind  # type: ignore[attr-defined]
    # Plain JSON only: a JSON round trip changes nothing.
    assert json.loads(json.dumps(data)) == data
    assert trigger_from_dict(json.loads(json.dumps(data))) == trigger


@pytest.mark.parametrize("kind", ["and", "or"])
def test_combining_aliases(kind: str) -> None:
    child = IntervalTrigger(seconds=5, start_date="2026-01-01", timezone="UTC")
    trigger = create_trigger(kind, {"triggers": [child]})
    assert trigger == (AndTrigger if kind == "and" else OrTrigger)([child])


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ({"kind": "fortnightly"}, "'fortnightly'"),
        ({}, "None"),
        ({"kind": 5}, "5"),
    ],
)
def test_unknown_kind(data: dict[str, Any], shown: str) -> None:
    with pytest.raises(TriggerError) as info:
        trigger_from_dict(data)
    assert info.value.field == "kind"
    assert shown in str(info.value)


def test_bad_values_in_a_dict_raise_trigger_error() -> None:
    with pytest.raises(TriggerError) as info:
        trigger_from_dict({"kind": "interval", "minutes": "5", "timezone": "UTC"})
    assert info.value.field == "minutes"
