"""CronTrigger beyond the shared vectors: construction, values, descriptions, edge cases."""

from __future__ import annotations

import json
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from horae import TriggerError
from horae.triggers import create_trigger, trigger_from_dict
from horae.triggers.cron import CronTrigger

UTC = timezone.utc


def fire_times(trigger: CronTrigger, after: str | datetime, count: int) -> list[str]:
    t: datetime | None = datetime.fromisoformat(after) if isinstance(after, str) else after
    out: list[str] = []
    for _ in range(count):
        assert t is not None
        t = trigger.next(t)
        if t is None:
            break
        out.append(t.isoformat())
    return out


# -- construction, repr, equality ----------------------------------------------------------


def test_repr_shows_the_arguments_as_given() -> None:
    trigger = CronTrigger(day_of_week="mon-fri", hour=9, timezone="Europe/Paris")
    assert repr(trigger) == "CronTrigger(day_of_week='mon-fri', hour='9', timezone='Europe/Paris')"


def test_repr_of_a_crontab_trigger_shows_the_string() -> None:
    trigger = CronTrigger.from_crontab("*/5 * * * *", timezone="UTC")
    assert repr(trigger) == "CronTrigger.from_crontab('*/5 * * * *', timezone='UTC')"
    assert trigger.crontab == "*/5 * * * *"


def test_repr_with_dates() -> None:
    trigger = CronTrigger(hour=3, start_date="2026-05-01", timezone="Europe/Paris")
    assert repr(trigger) == (
        "CronTrigger(hour='3', start_date='2026-05-01T00:00:00+02:00', timezone='Europe/Paris')"
    )


def test_integers_are_expressions() -> None:
    assert CronTrigger(hour=3, minute=30, timezone="UTC") == CronTrigger(
        hour="3", minute="30", timezone="UTC"
    )
    assert fire_times(CronTrigger(hour=3, timezone="UTC"), "2026-01-01T05:00:00+00:00", 2) == [
        "2026-01-02T03:00:00+00:00",
        "2026-01-03T03:00:00+00:00",
    ]


def test_equality_and_hash_follow_the_arguments() -> None:
    a = CronTrigger(minute="*/5", timezone="UTC")
    b = CronTrigger(minute="*/5", timezone=ZoneInfo("UTC"))
    assert a == b
    assert hash(a) == hash(b)
    assert a != CronTrigger(minute="*/5", timezone="Europe/Paris")
    assert a != CronTrigger.from_crontab("*/5 * * * *", timezone="UTC")
    assert len({a, b}) == 1


def test_is_a_frozen_value() -> None:
    trigger = CronTrigger(hour=1, timezone="UTC")
    with pytest.raises(AttributeError):
        trigger.hour = "2"  # type: ignore[misc]


def test_none_timezone_means_the_system_zone() -> None:
    from horae._time import system_timezone

    assert CronTrigger(hour=1).timezone == system_timezone()


@pytest.mark.parametrize(
    ("name", "meant"),
    [
        ("minutes", "minute"),
        ("hours", "hour"),
        ("dow", "day_of_week"),
        ("weekday", "day_of_week"),
        ("days", "day"),
        ("tz", "timezone"),
        ("end", "end_date"),
    ],
)
def test_unknown_argument_names_the_close_one(name: str, meant: str) -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger(**{name: "1"}, timezone="UTC")
    assert info.value.field == name
    assert f"did you mean {meant!r}?" in str(info.value)


def test_unknown_argument_without_a_close_name() -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger(frobnicate=1, timezone="UTC")
    assert info.value.field == "frobnicate"
    assert "frobnicate" in str(info.value)


@pytest.mark.parametrize("value", [1.5, True, False, [1, 2], (1,), {"a": 1}, b"1"])
def test_wrong_types_are_refused(value: object) -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger(hour=value, timezone="UTC")  # type: ignore[arg-type]
    assert info.value.field == "hour"
    assert "hour" in str(info.value)


@pytest.mark.parametrize(
    ("field", "value"), [("hour", 24), ("minute", -1), ("day_of_week", 7), ("year", 1969)]
)
def test_integers_out_of_range(field: str, value: int) -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger(**{field: value}, timezone="UTC")  # type: ignore[arg-type]
    assert info.value.field == field
    assert str(value) in str(info.value)


def test_error_message_names_field_value_and_what_is_valid() -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger(day_of_week="fry", timezone="UTC")
    message = str(info.value)
    assert message.startswith("day_of_week: 'fry' is not a weekday")
    assert "mon..sun" in message
    assert "0..6" in message


def test_error_inside_a_list_names_the_item_and_the_expression() -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger(minute="5,75,80", timezone="UTC")
    assert "'75'" in str(info.value)
    assert "'5,75,80'" in str(info.value)


def test_end_before_start_is_an_error() -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger(hour=1, start_date="2026-02-01", end_date="2026-01-01", timezone="UTC")
    assert info.value.field == "end_date"


def test_huge_numbers_are_out_of_range_not_slow() -> None:
    with pytest.raises(TriggerError):
        CronTrigger(minute="9" * 5000, timezone="UTC")
    with pytest.raises(TriggerError):
        CronTrigger(minute="*/" + "9" * 5000 + "x", timezone="UTC")


# -- defaults and field semantics ----------------------------------------------------------


def test_day_of_week_alone_fires_at_midnight() -> None:
    trigger = CronTrigger(day_of_week="mon", timezone="UTC")
    assert fire_times(trigger, "2026-03-04T00:00:00+00:00", 2) == [
        "2026-03-09T00:00:00+00:00",
        "2026-03-16T00:00:00+00:00",
    ]


def test_no_field_fires_every_second() -> None:
    assert fire_times(CronTrigger(timezone="UTC"), "2026-01-01T00:00:00.5+00:00", 2) == [
        "2026-01-01T00:00:01+00:00",
        "2026-01-01T00:00:02+00:00",
    ]


def test_names_are_case_insensitive() -> None:
    upper = CronTrigger(day_of_week="MON-Wed", month="JAN", hour=7, timezone="UTC")
    lower = CronTrigger(day_of_week="mon-wed", month="jan", hour=7, timezone="UTC")
    after = "2026-01-01T00:00:00+00:00"
    assert fire_times(upper, after, 6) == fire_times(lower, after, 6)
    assert fire_times(
        CronTrigger.from_crontab("0 7 * JAN Mon-WED", timezone="UTC"), after, 6
    ) == fire_times(lower, after, 6)


def test_spaces_around_list_items_are_ignored() -> None:
    spaced = CronTrigger(hour=" 1 , 2 ", day=" last fri, 1st  mon", timezone="UTC")
    plain = CronTrigger(hour="1,2", day="last fri,1st mon", timezone="UTC")
    after = "2026-01-01T00:00:00+00:00"
    assert fire_times(spaced, after, 8) == fire_times(plain, after, 8)


def test_impossible_day_is_exhausted_quickly() -> None:
    trigger = CronTrigger(month=2, day=30, timezone="UTC")
    began = time.perf_counter()
    assert trigger.next(datetime(2026, 1, 1, tzinfo=UTC)) is None
    assert time.perf_counter() - began < 1.0


def test_year_field_exhaustion() -> None:
    trigger = CronTrigger(year=2027, timezone="UTC")
    assert trigger.next(datetime(2027, 1, 1, tzinfo=UTC)) is None


def test_no_overflow_at_the_end_of_year_9999() -> None:
    last = CronTrigger(year=9999, month=12, day=31, hour=23, minute=59, second=59, timezone="UTC")
    fired = last.next(datetime(9999, 1, 1, tzinfo=UTC))
    assert fired == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert last.next(fired) is None
    assert CronTrigger(second="*", timezone="Europe/Paris").next(fired) is None


def test_start_and_end_are_inclusive() -> None:
    trigger = CronTrigger(
        minute=0,
        start_date="2026-05-01T10:00:00",
        end_date="2026-05-01T12:00:00",
        timezone="Europe/Paris",
    )
    assert fire_times(trigger, "2026-01-01T00:00:00+00:00", 5) == [
        "2026-05-01T10:00:00+02:00",
        "2026-05-01T11:00:00+02:00",
        "2026-05-01T12:00:00+02:00",
    ]


def test_start_and_end_accept_date_and_datetime_objects() -> None:
    trigger = CronTrigger(
        hour=12,
        start_date=date(2026, 5, 1),
        end_date=datetime(2026, 5, 2, 12, tzinfo=ZoneInfo("Asia/Kolkata")),
        timezone="Asia/Kolkata",
    )
    assert fire_times(trigger, "2026-01-01T00:00:00+00:00", 3) == [
        "2026-05-01T12:00:00+05:30",
        "2026-05-02T12:00:00+05:30",
    ]


# -- after, offsets, microseconds ----------------------------------------------------------


def test_after_in_any_offset_is_the_same_instant() -> None:
    trigger = CronTrigger(minute="*/5", timezone="Europe/Paris")
    instant = datetime(2026, 6, 1, 10, 2, 30, tzinfo=UTC)
    results = {
        trigger.next(instant.astimezone(zone))
        for zone in (UTC, ZoneInfo("Asia/Tokyo"), ZoneInfo("America/Los_Angeles"))
    }
    results.add(trigger.next(instant.astimezone(timezone(timedelta(hours=-3, minutes=-30)))))
    assert results == {datetime(2026, 6, 1, 10, 5, tzinfo=UTC)}
    fired = results.pop()
    assert fired is not None
    assert fired.utcoffset() == timedelta(hours=2)
    assert fired.tzname() == "CEST"


def test_microseconds() -> None:
    trigger = CronTrigger(second="*/10", timezone="UTC")
    assert fire_times(trigger, "2026-01-01T00:00:09.999999+00:00", 1) == [
        "2026-01-01T00:00:10+00:00"
    ]
    assert fire_times(trigger, "2026-01-01T00:00:10.000001+00:00", 1) == [
        "2026-01-01T00:00:20+00:00"
    ]


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        CronTrigger(hour=1, timezone="UTC").next(datetime(2026, 1, 1))


def test_results_compare_as_instants_in_a_repeated_hour() -> None:
    trigger = CronTrigger(minute=0, timezone="Europe/London")
    first, second, third = fire_times(trigger, "2026-10-25T00:30:00+01:00", 3)
    assert (first, second, third) == (
        "2026-10-25T01:00:00+01:00",
        "2026-10-25T02:00:00+00:00",
        "2026-10-25T03:00:00+00:00",
    )
    fired = trigger.next(datetime(2026, 10, 25, 0, 30, tzinfo=ZoneInfo("Europe/London")))
    assert fired == datetime.fromisoformat("2026-10-25T01:00:00+01:00")
    assert fired != datetime.fromisoformat("2026-10-25T01:00:00+00:00")


def test_after_in_the_second_pass_of_a_repeated_hour() -> None:
    # 01:10 GMT is the second 01:10 of the night; 01:15 and later walls of that hour
    # fired in their first pass (BST), so the next is 02:00 GMT.
    trigger = CronTrigger(minute="*/15", timezone="Europe/London")
    after = datetime(2026, 10, 25, 1, 10, tzinfo=ZoneInfo("Europe/London"), fold=1)
    assert after.utcoffset() == timedelta(0)
    assert fire_times(trigger, after, 2) == [
        "2026-10-25T02:00:00+00:00",
        "2026-10-25T02:15:00+00:00",
    ]


def test_lord_howe_half_hour_gap_orders_by_instant() -> None:
    trigger = CronTrigger(minute="*/20", hour=2, timezone="Australia/Lord_Howe")
    assert fire_times(trigger, "2026-10-03T12:00:00+10:30", 4) == [
        "2026-10-04T02:30:00+11:00",
        "2026-10-04T02:40:00+11:00",
        "2026-10-04T02:50:00+11:00",
        "2026-10-05T02:00:00+11:00",
    ]


def test_havana_midnight_gap() -> None:
    trigger = CronTrigger(hour=0, timezone="America/Havana")
    assert fire_times(trigger, "2026-03-07T12:00:00-05:00", 2) == [
        "2026-03-08T01:00:00-04:00",
        "2026-03-09T00:00:00-04:00",
    ]


def test_sparse_schedule_is_fast() -> None:
    trigger = CronTrigger(month=2, day=29, day_of_week="mon", timezone="UTC")
    t: datetime | None = datetime(2026, 1, 1, tzinfo=UTC)
    began = time.perf_counter()
    for _ in range(50):
        assert t is not None
        t = trigger.next(t)
    per_call = (time.perf_counter() - began) / 50
    assert t is not None
    assert t.year > 3000
    assert per_call < 0.001


# -- crontab -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("macro", "expanded"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros(macro: str, expanded: str) -> None:
    trigger = CronTrigger.from_crontab(macro, timezone="Europe/Paris")
    reference = CronTrigger.from_crontab(expanded, timezone="Europe/Paris")
    after = "2026-03-28T12:00:00+01:00"
    assert fire_times(trigger, after, 5) == fire_times(reference, after, 5)
    assert repr(trigger) == f"CronTrigger.from_crontab({macro!r}, timezone='Europe/Paris')"
    assert macro.lower() in trigger.describe()


@pytest.mark.parametrize("expr", ["@reboot", "@every5m", "@", "@ daily"])
def test_bad_macros(expr: str) -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger.from_crontab(expr, timezone="UTC")
    assert info.value.field == "expr"
    assert "expr" in str(info.value)


@pytest.mark.parametrize("expr", [None, 5, b"* * * * *", ["*"] * 5])
def test_crontab_must_be_a_string(expr: object) -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger.from_crontab(expr, timezone="UTC")  # type: ignore[arg-type]
    assert info.value.field == "expr"


def test_crontab_day_or_weekday() -> None:
    trigger = CronTrigger.from_crontab("0 0 13 * 5", timezone="UTC")
    assert fire_times(trigger, "2026-02-01T00:00:00+00:00", 4) == [
        "2026-02-06T00:00:00+00:00",
        "2026-02-13T00:00:00+00:00",
        "2026-02-20T00:00:00+00:00",
        "2026-02-27T00:00:00+00:00",
    ]
    assert fire_times(trigger, "2026-03-01T00:00:00+00:00", 3) == [
        "2026-03-06T00:00:00+00:00",
        "2026-03-13T00:00:00+00:00",
        "2026-03-20T00:00:00+00:00",
    ]


def test_crontab_sunday_is_0_and_7() -> None:
    after = "2026-03-02T00:00:00+00:00"
    sundays = fire_times(CronTrigger.from_crontab("0 0 * * 0", timezone="UTC"), after, 3)
    assert sundays == fire_times(CronTrigger.from_crontab("0 0 * * 7", timezone="UTC"), after, 3)
    assert sundays == fire_times(CronTrigger.from_crontab("0 0 * * sun", timezone="UTC"), after, 3)
    assert sundays[0] == "2026-03-08T00:00:00+00:00"


def test_crontab_last_and_nth_weekday_forms() -> None:
    last_friday = CronTrigger.from_crontab("0 10 * * 5L", timezone="UTC")
    assert fire_times(last_friday, "2026-01-01T00:00:00+00:00", 2) == [
        "2026-01-30T10:00:00+00:00",
        "2026-02-27T10:00:00+00:00",
    ]
    third_friday = CronTrigger.from_crontab("0 10 * * fri#3", timezone="UTC")
    assert fire_times(third_friday, "2026-01-01T00:00:00+00:00", 2) == [
        "2026-01-16T10:00:00+00:00",
        "2026-02-20T10:00:00+00:00",
    ]
    last_day = CronTrigger.from_crontab("0 0 L 2 *", timezone="UTC")
    assert fire_times(last_day, "2027-01-01T00:00:00+00:00", 2) == [
        "2027-02-28T00:00:00+00:00",
        "2028-02-29T00:00:00+00:00",
    ]


def test_crontab_field_errors_name_the_field() -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger.from_crontab("0 0 * * fry", timezone="UTC")
    assert info.value.field == "day_of_week"
    assert "'0 0 * * fry'" in str(info.value)


# -- serialization ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [
        CronTrigger(hour=9, day_of_week="mon-fri", timezone="Europe/Paris"),
        CronTrigger(
            day="last fri,3rd mon",
            month="jan-mar",
            start_date="2026-03-29T02:30:00",
            end_date=datetime(2030, 1, 1, tzinfo=UTC),
            timezone="Europe/Paris",
        ),
        CronTrigger.from_crontab("*/5 * * * *", timezone="UTC"),
        CronTrigger.from_crontab("@weekly", timezone="America/New_York"),
        CronTrigger.from_crontab("0 9 * * 1-5", "Asia/Kolkata", start_date="2026-01-01"),
    ],
    ids=repr,
)
def test_dict_round_trip(trigger: CronTrigger) -> None:
    data = trigger.to_dict()
    assert data["kind"] == "cron"
    assert json.loads(json.dumps(data)) == data
    assert CronTrigger.from_dict(data) == trigger
    assert trigger_from_dict(data) == trigger
    back = CronTrigger.from_dict(json.loads(json.dumps(data)))
    after = datetime(2026, 3, 1, tzinfo=UTC)
    assert fire_times(back, after, 5) == fire_times(trigger, after, 5)


def test_to_dict_keeps_the_fields_as_given() -> None:
    assert CronTrigger(hour=9, minute="*/15", timezone="UTC").to_dict() == {
        "kind": "cron",
        "year": None,
        "month": None,
        "day": None,
        "week": None,
        "day_of_week": None,
        "hour": "9",
        "minute": "*/15",
        "second": None,
        "start_date": None,
        "end_date": None,
        "timezone": "UTC",
    }
    assert CronTrigger.from_crontab("@daily", timezone="UTC").to_dict() == {
        "kind": "cron",
        "crontab": "@daily",
        "start_date": None,
        "end_date": None,
        "timezone": "UTC",
    }


def test_from_dict_refuses_crontab_and_fields_together() -> None:
    with pytest.raises(TriggerError) as info:
        CronTrigger.from_dict(
            {"kind": "cron", "crontab": "* * * * *", "hour": "1", "timezone": "UTC"}
        )
    assert info.value.field == "hour"


def test_create_trigger_alias() -> None:
    trigger = create_trigger("cron", {"hour": 3}, default_timezone=ZoneInfo("Europe/Paris"))
    assert trigger == CronTrigger(hour=3, timezone="Europe/Paris")
    with pytest.raises(TriggerError) as info:
        create_trigger("cron", {"minutes": 3})
    assert "did you mean 'minute'?" in str(info.value)


# -- describe --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "text"),
    [
        (
            CronTrigger(hour=9, day_of_week="mon-fri", timezone="Europe/Paris"),
            "at 09:00 on Monday through Friday (Europe/Paris)",
        ),
        (CronTrigger.from_crontab("*/5 * * * *", timezone="UTC"), "every 5 minutes (UTC)"),
        (CronTrigger(second="*/10", timezone="UTC"), "every 10 seconds (UTC)"),
        # A step that does not divide the cycle restarts with it: say the values.
        (CronTrigger(minute="*/45", timezone="UTC"), "at minute 0 and 45 (UTC)"),
        (CronTrigger(hour="*/30", timezone="UTC"), "at minute 0 during hour 0 (UTC)"),
        (
            CronTrigger(second="0,10,20,30,40,50", timezone="UTC"),
            "at second 0, 10, 20, 30, 40 and 50 (UTC)",
        ),
        (CronTrigger(minute=0, timezone="UTC"), "at minute 0 of every hour (UTC)"),
        (
            CronTrigger(day="last fri", month="jan,jul", hour=12, minute=30, timezone="UTC"),
            "at 12:30 on the last Friday in January and July (UTC)",
        ),
        (
            CronTrigger.from_crontab("0 0 13 * 5", timezone="UTC"),
            "at 00:00 on day 13 or on Friday (UTC)",
        ),
        (
            CronTrigger(month=2, day=29, day_of_week="mon", timezone="UTC"),
            "at 00:00 on day 29 if it is Monday in February (UTC)",
        ),
        (
            CronTrigger.from_crontab("0 10 * * 5#3", timezone="UTC"),
            "at 10:00 on the 3rd Friday (UTC)",
        ),
        (
            CronTrigger(minute="*/15", hour="9-17", timezone="UTC"),
            "every 15 minutes during hours 9 through 17 (UTC)",
        ),
    ],
    ids=repr,
)
def test_describe(trigger: CronTrigger, text: str) -> None:
    assert trigger.describe() == text


def test_describe_mentions_start_and_end() -> None:
    trigger = CronTrigger(
        hour=3, start_date="2026-05-01", end_date="2027-01-01 12:00", timezone="Europe/Paris"
    )
    assert trigger.describe() == (
        "at 03:00 (Europe/Paris) from 2026-05-01 00:00 CEST until 2027-01-01 12:00 CET"
    )
