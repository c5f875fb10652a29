"""The per-trigger DST policies: ``dst_gap`` ("shift" | "skip") and ``dst_repeated``
("first" | "both") on cron, crontab and calendarinterval triggers.

The defaults are vectors rule 8 (``test_vectors.py`` checks them); here:

- worked examples across the 2026 changes in New York, London, Lord Howe (30-minute
  DST) and Havana (DST at midnight), for each policy and each trigger form;
- a brute-force reference: every local minute of three days around each change is
  matched and mapped to instants by the policy, and ``next()`` must give exactly those;
- properties: fire instants strictly increase under every policy, and over a window
  "both" fires at a superset of "first" and "skip" at a subset of "shift";
- errors, ``to_dict()`` round trips, ``repr``, ``describe()`` and the registry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from itertools import pairwise, product
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from horae import TriggerError
from horae.triggers import (
    CalendarIntervalTrigger,
    CronTrigger,
    DateTrigger,
    IntervalTrigger,
    OrTrigger,
    Trigger,
    create_trigger,
    trigger_from_dict,
)

from .strategies import ZONES

UTC = timezone.utc
NEW_YORK = "America/New_York"
LONDON = "Europe/London"
LORD_HOWE = "Australia/Lord_Howe"
HAVANA = "America/Havana"

GAPS = ("shift", "skip")
REPEATS = ("first", "both")
POLICIES = list(product(GAPS, REPEATS))


def fires(trigger: Trigger, after: str, count: int) -> list[str | None]:
    """``count`` chained ``next()`` results as ISO strings (``None`` once exhausted)."""
    t: datetime | None = datetime.fromisoformat(after)
    out: list[str | None] = []
    for _ in range(count):
        assert t is not None
        t = trigger.next(t)
        out.append(None if t is None else t.isoformat())
        if t is None:
            break
    return out


def cron(**kwargs: Any) -> Callable[[str, str], Trigger]:
    """A builder of ``CronTrigger(**kwargs)`` for a policy."""
    return lambda gap, repeated: CronTrigger(**kwargs, dst_gap=gap, dst_repeated=repeated)


def crontab(expr: str, zone: str) -> Callable[[str, str], Trigger]:
    return lambda gap, repeated: CronTrigger.from_crontab(
        expr, zone, dst_gap=gap, dst_repeated=repeated
    )


def calendar(**kwargs: Any) -> Callable[[str, str], Trigger]:
    return lambda gap, repeated: CalendarIntervalTrigger(
        **kwargs, dst_gap=gap, dst_repeated=repeated
    )


# --- worked examples ------------------------------------------------------------------
#
# Each case: a builder, ``after``, and the expected fire times for the policies that
# matter (the other policy of the pair gives the same as the default there).
#
# 2026 changes: New York 03-08 02:00 EST -> 03:00 EDT and 11-01 02:00 EDT -> 01:00 EST;
# London 03-29 01:00 GMT -> 02:00 BST and 10-25 02:00 BST -> 01:00 GMT; Lord Howe 04-05
# 02:00 +11 -> 01:30 +10:30 and 10-04 02:00 +10:30 -> 02:30 +11; Havana 03-08 00:00
# CST -> 01:00 CDT and 11-01 01:00 CDT -> 00:00 CST.

GAP_CASES = [
    pytest.param(
        cron(hour=2, minute=30, timezone=NEW_YORK),
        "2026-03-07T12:00:00-05:00",
        ["2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"],
        ["2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"],
        id="new-york-cron-02:30",
    ),
    pytest.param(
        cron(hour=2, timezone=NEW_YORK),
        "2026-03-07T12:00:00-05:00",
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"],
        ["2026-03-09T02:00:00-04:00", "2026-03-10T02:00:00-04:00"],
        id="new-york-cron-hour-2-daily",
    ),
    pytest.param(
        # Shifted 02:00/02:30 coincide with 03:00/03:30, which exist: skipping the gap
        # walls changes nothing here.
        cron(hour="1-3", minute="*/30", timezone=NEW_YORK),
        "2026-03-08T00:00:00-05:00",
        [
            "2026-03-08T01:00:00-05:00",
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-08T03:30:00-04:00",
        ],
        [
            "2026-03-08T01:00:00-05:00",
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-08T03:30:00-04:00",
        ],
        id="new-york-cron-coinciding",
    ),
    pytest.param(
        crontab("30 2 * * *", NEW_YORK),
        "2026-03-07T12:00:00-05:00",
        ["2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"],
        ["2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"],
        id="new-york-crontab",
    ),
    pytest.param(
        calendar(days=1, hour=2, minute=30, start_date="2026-03-01", timezone=NEW_YORK),
        "2026-03-07T12:00:00-05:00",
        ["2026-03-08T03:30:00-04:00", "2026-03-09T02:30:00-04:00"],
        ["2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"],
        id="new-york-calendarinterval",
    ),
    pytest.param(
        cron(hour=1, minute="0,30", timezone=LONDON),
        "2026-03-28T12:00:00+00:00",
        [
            "2026-03-29T02:00:00+01:00",
            "2026-03-29T02:30:00+01:00",
            "2026-03-30T01:00:00+01:00",
        ],
        [
            "2026-03-30T01:00:00+01:00",
            "2026-03-30T01:30:00+01:00",
            "2026-03-31T01:00:00+01:00",
        ],
        id="london-cron",
    ),
    pytest.param(
        crontab("*/20 1 * * *", LONDON),
        "2026-03-28T12:00:00+00:00",
        [
            "2026-03-29T02:00:00+01:00",
            "2026-03-29T02:20:00+01:00",
            "2026-03-29T02:40:00+01:00",
            "2026-03-30T01:00:00+01:00",
        ],
        [
            "2026-03-30T01:00:00+01:00",
            "2026-03-30T01:20:00+01:00",
            "2026-03-30T01:40:00+01:00",
            "2026-03-31T01:00:00+01:00",
        ],
        id="london-crontab",
    ),
    pytest.param(
        # weekly on Sundays from 2026-03-22
        calendar(weeks=1, hour=1, minute=30, start_date="2026-03-22", timezone=LONDON),
        "2026-03-22T12:00:00+00:00",
        ["2026-03-29T02:30:00+01:00", "2026-04-05T01:30:00+01:00"],
        ["2026-04-05T01:30:00+01:00", "2026-04-12T01:30:00+01:00"],
        id="london-calendarinterval-weekly",
    ),
    pytest.param(
        # 30-minute gap: 02:00 and 02:20 do not exist, 02:40 does (vectors rule 8).
        cron(hour=2, minute="*/20", timezone=LORD_HOWE),
        "2026-10-04T01:00:00+10:30",
        [
            "2026-10-04T02:30:00+11:00",
            "2026-10-04T02:40:00+11:00",
            "2026-10-04T02:50:00+11:00",
            "2026-10-05T02:00:00+11:00",
        ],
        [
            "2026-10-04T02:40:00+11:00",
            "2026-10-05T02:00:00+11:00",
            "2026-10-05T02:20:00+11:00",
            "2026-10-05T02:40:00+11:00",
        ],
        id="lord-howe-cron",
    ),
    pytest.param(
        crontab("15 2 * * *", LORD_HOWE),
        "2026-10-03T12:00:00+10:30",
        ["2026-10-04T02:45:00+11:00", "2026-10-05T02:15:00+11:00"],
        ["2026-10-05T02:15:00+11:00", "2026-10-06T02:15:00+11:00"],
        id="lord-howe-crontab",
    ),
    pytest.param(
        calendar(days=2, hour=2, minute=15, start_date="2026-09-30", timezone=LORD_HOWE),
        "2026-10-01T12:00:00+10:30",
        ["2026-10-02T02:15:00+10:30", "2026-10-04T02:45:00+11:00"],
        ["2026-10-02T02:15:00+10:30", "2026-10-06T02:15:00+11:00"],
        id="lord-howe-calendarinterval-every-2-days",
    ),
    pytest.param(
        # The gap starts at midnight: 00:00-00:59 do not exist on 2026-03-08.
        cron(hour=0, timezone=HAVANA),
        "2026-03-06T12:00:00-05:00",
        [
            "2026-03-07T00:00:00-05:00",
            "2026-03-08T01:00:00-04:00",
            "2026-03-09T00:00:00-04:00",
        ],
        [
            "2026-03-07T00:00:00-05:00",
            "2026-03-09T00:00:00-04:00",
            "2026-03-10T00:00:00-04:00",
        ],
        id="havana-cron-midnight",
    ),
    pytest.param(
        crontab("@daily", HAVANA),
        "2026-03-07T12:00:00-05:00",
        ["2026-03-08T01:00:00-04:00", "2026-03-09T00:00:00-04:00"],
        ["2026-03-09T00:00:00-04:00", "2026-03-10T00:00:00-04:00"],
        id="havana-crontab-daily",
    ),
    pytest.param(
        crontab("*/30 0 * * *", HAVANA),
        "2026-03-07T12:00:00-05:00",
        [
            "2026-03-08T01:00:00-04:00",
            "2026-03-08T01:30:00-04:00",
            "2026-03-09T00:00:00-04:00",
        ],
        [
            "2026-03-09T00:00:00-04:00",
            "2026-03-09T00:30:00-04:00",
            "2026-03-10T00:00:00-04:00",
        ],
        id="havana-crontab-half-hours",
    ),
    pytest.param(
        calendar(days=1, start_date="2026-03-06", timezone=HAVANA),
        "2026-03-05T12:00:00-05:00",
        [
            "2026-03-06T00:00:00-05:00",
            "2026-03-07T00:00:00-05:00",
            "2026-03-08T01:00:00-04:00",
            "2026-03-09T00:00:00-04:00",
        ],
        [
            "2026-03-06T00:00:00-05:00",
            "2026-03-07T00:00:00-05:00",
            "2026-03-09T00:00:00-04:00",
            "2026-03-10T00:00:00-04:00",
        ],
        id="havana-calendarinterval-midnight",
    ),
    pytest.param(
        # Monthly on the 8th at 00:00: March's occurrence is dropped, April's follows.
        calendar(months=1, start_date="2026-01-08", timezone=HAVANA),
        "2026-02-08T12:00:00-05:00",
        ["2026-03-08T01:00:00-04:00", "2026-04-08T00:00:00-04:00"],
        ["2026-04-08T00:00:00-04:00", "2026-05-08T00:00:00-04:00"],
        id="havana-calendarinterval-monthly",
    ),
]


@pytest.mark.parametrize(("build", "after", "shift", "skip"), GAP_CASES)
@pytest.mark.parametrize("repeated", REPEATS)
def test_dst_gap(
    build: Callable[[str, str], Trigger],
    after: str,
    shift: list[str],
    skip: list[str],
    repeated: str,
) -> None:
    # No repeated wall time is involved: dst_repeated does not change these.
    assert fires(build("shift", repeated), after, len(shift)) == shift
    assert fires(build("skip", repeated), after, len(skip)) == skip


REPEATED_CASES = [
    pytest.param(
        cron(minute=0, timezone=LONDON),
        "2026-10-24T23:30:00+01:00",
        [
            "2026-10-25T00:00:00+01:00",
            "2026-10-25T01:00:00+01:00",
            "2026-10-25T02:00:00+00:00",
        ],
        [
            "2026-10-25T00:00:00+01:00",
            "2026-10-25T01:00:00+01:00",
            "2026-10-25T01:00:00+00:00",
            "2026-10-25T02:00:00+00:00",
        ],
        id="london-cron-hourly",
    ),
    pytest.param(
        cron(hour=1, minute="*/30", timezone=LONDON),
        "2026-10-24T12:00:00+01:00",
        [
            "2026-10-25T01:00:00+01:00",
            "2026-10-25T01:30:00+01:00",
            "2026-10-26T01:00:00+00:00",
        ],
        [
            "2026-10-25T01:00:00+01:00",
            "2026-10-25T01:30:00+01:00",
            "2026-10-25T01:00:00+00:00",
            "2026-10-25T01:30:00+00:00",
            "2026-10-26T01:00:00+00:00",
        ],
        id="london-cron-half-hours",
    ),
    pytest.param(
        crontab("*/30 1 * * *", LONDON),
        "2026-10-24T12:00:00+01:00",
        [
            "2026-10-25T01:00:00+01:00",
            "2026-10-25T01:30:00+01:00",
            "2026-10-26T01:00:00+00:00",
        ],
        [
            "2026-10-25T01:00:00+01:00",
            "2026-10-25T01:30:00+01:00",
            "2026-10-25T01:00:00+00:00",
            "2026-10-25T01:30:00+00:00",
            "2026-10-26T01:00:00+00:00",
        ],
        id="london-crontab-half-hours",
    ),
    pytest.param(
        # weekly on Sundays from 2026-10-04
        calendar(weeks=1, hour=1, minute=30, start_date="2026-10-04", timezone=LONDON),
        "2026-10-12T12:00:00+01:00",
        [
            "2026-10-18T01:30:00+01:00",
            "2026-10-25T01:30:00+01:00",
            "2026-11-01T01:30:00+00:00",
        ],
        [
            "2026-10-18T01:30:00+01:00",
            "2026-10-25T01:30:00+01:00",
            "2026-10-25T01:30:00+00:00",
            "2026-11-01T01:30:00+00:00",
        ],
        id="london-calendarinterval-weekly",
    ),
    pytest.param(
        cron(hour=1, minute=30, timezone=NEW_YORK),
        "2026-10-31T12:00:00-04:00",
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        [
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-02T01:30:00-05:00",
        ],
        id="new-york-cron",
    ),
    pytest.param(
        crontab("0 * * * *", NEW_YORK),
        "2026-10-31T23:30:00-04:00",
        [
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T02:00:00-05:00",
        ],
        [
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ],
        id="new-york-crontab-hourly",
    ),
    pytest.param(
        calendar(days=1, hour=1, minute=30, start_date="2026-10-01", timezone=NEW_YORK),
        "2026-10-31T12:00:00-04:00",
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        [
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-02T01:30:00-05:00",
        ],
        id="new-york-calendarinterval",
    ),
    pytest.param(
        # 30-minute fall-back: 01:30-01:59 happen twice.
        cron(hour=1, minute="*/15", timezone=LORD_HOWE),
        "2026-04-05T00:50:00+11:00",
        [
            "2026-04-05T01:00:00+11:00",
            "2026-04-05T01:15:00+11:00",
            "2026-04-05T01:30:00+11:00",
            "2026-04-05T01:45:00+11:00",
            "2026-04-06T01:00:00+10:30",
        ],
        [
            "2026-04-05T01:00:00+11:00",
            "2026-04-05T01:15:00+11:00",
            "2026-04-05T01:30:00+11:00",
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:30:00+10:30",
            "2026-04-05T01:45:00+10:30",
            "2026-04-06T01:00:00+10:30",
        ],
        id="lord-howe-cron",
    ),
    pytest.param(
        crontab("*/20 * * * *", LORD_HOWE),
        "2026-04-05T01:10:00+11:00",
        [
            "2026-04-05T01:20:00+11:00",
            "2026-04-05T01:40:00+11:00",
            "2026-04-05T02:00:00+10:30",
        ],
        [
            "2026-04-05T01:20:00+11:00",
            "2026-04-05T01:40:00+11:00",
            "2026-04-05T01:40:00+10:30",
            "2026-04-05T02:00:00+10:30",
        ],
        id="lord-howe-crontab",
    ),
    pytest.param(
        calendar(days=1, hour=1, minute=45, start_date="2026-04-01", timezone=LORD_HOWE),
        "2026-04-04T12:00:00+11:00",
        ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
        [
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:45:00+10:30",
            "2026-04-06T01:45:00+10:30",
        ],
        id="lord-howe-calendarinterval",
    ),
    pytest.param(
        # The repeated hour starts at midnight: 00:00-00:59 happen twice on 2026-11-01.
        cron(hour=0, timezone=HAVANA),
        "2026-10-31T12:00:00-04:00",
        ["2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"],
        [
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T00:00:00-05:00",
            "2026-11-02T00:00:00-05:00",
        ],
        id="havana-cron-midnight",
    ),
    pytest.param(
        crontab("@daily", HAVANA),
        "2026-10-31T12:00:00-04:00",
        ["2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00"],
        [
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T00:00:00-05:00",
            "2026-11-02T00:00:00-05:00",
        ],
        id="havana-crontab-daily",
    ),
    pytest.param(
        calendar(months=1, start_date="2026-10-01", timezone=HAVANA),
        "2026-09-30T12:00:00-04:00",
        [
            "2026-10-01T00:00:00-04:00",
            "2026-11-01T00:00:00-04:00",
            "2026-12-01T00:00:00-05:00",
        ],
        [
            "2026-10-01T00:00:00-04:00",
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T00:00:00-05:00",
            "2026-12-01T00:00:00-05:00",
        ],
        id="havana-calendarinterval-monthly",
    ),
]


@pytest.mark.parametrize(("build", "after", "first", "both"), REPEATED_CASES)
@pytest.mark.parametrize("gap", GAPS)
def test_dst_repeated(
    build: Callable[[str, str], Trigger],
    after: str,
    first: list[str],
    both: list[str],
    gap: str,
) -> None:
    # No skipped wall time is involved: dst_gap does not change these.
    assert fires(build(gap, "first"), after, len(first)) == first
    assert fires(build(gap, "both"), after, len(both)) == both


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # after the first 01:30 (BST) comes the second 01:00 (GMT): a later instant
        ("2026-10-25T01:30:00+01:00", "2026-10-25T01:00:00+00:00"),
        ("2026-10-25T00:30:00+00:00", "2026-10-25T01:00:00+00:00"),  # the same instant
        ("2026-10-25T01:00:00+01:00", "2026-10-25T01:30:00+01:00"),
        ("2026-10-25T01:29:59.999999+01:00", "2026-10-25T01:30:00+01:00"),
        ("2026-10-25T01:59:59.999999+01:00", "2026-10-25T01:00:00+00:00"),
        ("2026-10-25T01:00:00+00:00", "2026-10-25T01:30:00+00:00"),
        ("2026-10-25T01:15:00+00:00", "2026-10-25T01:30:00+00:00"),
        ("2026-10-25T01:30:00+00:00", "2026-10-26T01:00:00+00:00"),
        # ``after`` in another zone: only the instant counts
        ("2026-10-25T09:45:00+09:00", "2026-10-25T01:00:00+00:00"),
    ],
)
def test_both_is_the_next_instant_even_before_in_wall_time(after: str, expected: str) -> None:
    trigger = CronTrigger(hour=1, minute="*/30", timezone=LONDON, dst_repeated="both")
    assert fires(trigger, after, 1) == [expected]


def test_both_names_the_second_occurrence_by_its_own_offset() -> None:
    london = CronTrigger(minute=0, timezone=LONDON, dst_repeated="both")
    names = []
    t: datetime | None = datetime.fromisoformat("2026-10-24T23:30:00+01:00")
    for _ in range(4):
        assert t is not None
        t = london.next(t)
        assert t is not None
        names.append(f"{t:%H:%M} {t.tzname()}")
    assert names == ["00:00 BST", "01:00 BST", "01:00 GMT", "02:00 GMT"]
    havana = CalendarIntervalTrigger(
        days=1, start_date="2026-10-30", timezone=HAVANA, dst_repeated="both"
    )
    second = havana.next(datetime.fromisoformat("2026-11-01T00:00:00-04:00"))
    assert second is not None
    assert (second.isoformat(), second.tzname()) == ("2026-11-01T00:00:00-05:00", "CST")


def test_skip_and_both_together() -> None:
    def build(gap: str, repeated: str) -> CronTrigger:
        return CronTrigger(
            hour="1-2", minute="*/30", timezone=LONDON, dst_gap=gap, dst_repeated=repeated
        )

    trigger = build("skip", "both")
    # Spring: 01:00 and 01:30 do not exist on 2026-03-29; 02:00 and 02:30 do.
    assert fires(trigger, "2026-03-29T00:00:00+00:00", 3) == [
        "2026-03-29T02:00:00+01:00",
        "2026-03-29T02:30:00+01:00",
        "2026-03-30T01:00:00+01:00",
    ]
    # Autumn: 01:00 and 01:30 happen twice on 2026-10-25.
    assert fires(trigger, "2026-10-25T00:00:00+01:00", 7) == [
        "2026-10-25T01:00:00+01:00",
        "2026-10-25T01:30:00+01:00",
        "2026-10-25T01:00:00+00:00",
        "2026-10-25T01:30:00+00:00",
        "2026-10-25T02:00:00+00:00",
        "2026-10-25T02:30:00+00:00",
        "2026-10-26T01:00:00+00:00",
    ]


def test_dates_bound_the_second_occurrence() -> None:
    # end_date is an instant: 01:30 BST comes before 01:00 GMT, which does not fire.
    trigger = CronTrigger(
        hour=1,
        minute="*/30",
        end_date="2026-10-25T01:30:00+01:00",
        timezone=LONDON,
        dst_repeated="both",
    )
    assert fires(trigger, "2026-10-25T00:00:00+01:00", 3) == [
        "2026-10-25T01:00:00+01:00",
        "2026-10-25T01:30:00+01:00",
        None,
    ]
    # A start_date between the two passes: only the second ones fire.
    trigger = CronTrigger(
        hour=1,
        minute="*/30",
        start_date="2026-10-25T01:00:00+00:00",
        timezone=LONDON,
        dst_repeated="both",
    )
    assert fires(trigger, "2026-10-01T00:00:00+00:00", 2) == [
        "2026-10-25T01:00:00+00:00",
        "2026-10-25T01:30:00+00:00",
    ]


def test_naive_dates_are_still_read_by_rule_8() -> None:
    # The policies choose fire times; naive start_date/end_date keep vectors rule 8 (a
    # gap time is shifted, a repeated time is its first occurrence).
    trigger = CronTrigger(
        minute="*/30",
        start_date="2026-03-08T02:30:00",
        timezone=NEW_YORK,
        dst_gap="skip",
    )
    assert trigger.start_date is not None
    assert trigger.start_date.isoformat() == "2026-03-08T03:30:00-04:00"
    assert fires(trigger, "2026-03-01T00:00:00-05:00", 1) == ["2026-03-08T03:30:00-04:00"]


def test_date_only_start_in_a_gap_is_skipped_too() -> None:
    # A date-only start_date fires on its own date, unless its time does not exist and
    # the trigger skips such times: then the next occurrence is the first.
    trigger = CalendarIntervalTrigger(
        days=1, hour=2, minute=30, start_date="2026-03-08", timezone=NEW_YORK, dst_gap="skip"
    )
    assert fires(trigger, "2026-03-01T00:00:00-05:00", 1) == ["2026-03-09T02:30:00-04:00"]


@pytest.mark.parametrize(("gap", "repeated"), POLICIES)
def test_zones_without_dst_are_unaffected(gap: str, repeated: str) -> None:
    for zone in ("UTC", "Asia/Tokyo"):
        default = CronTrigger(minute="*/30", timezone=zone)
        chosen = CronTrigger(minute="*/30", timezone=zone, dst_gap=gap, dst_repeated=repeated)
        after = "2026-03-08T00:00:00+00:00"
        assert fires(chosen, after, 50) == fires(default, after, 50)


# --- brute force ----------------------------------------------------------------------

CHANGES = [
    (NEW_YORK, date(2026, 3, 8)),
    (NEW_YORK, date(2026, 11, 1)),
    (LONDON, date(2026, 3, 29)),
    (LONDON, date(2026, 10, 25)),
    (LORD_HOWE, date(2026, 4, 5)),
    (LORD_HOWE, date(2026, 10, 4)),
    (HAVANA, date(2026, 3, 8)),
    (HAVANA, date(2026, 11, 1)),
]
# (cron keyword fields, the same as a crontab line, the hours and minutes they match)
SCHEDULES = [
    ({"minute": "*/30"}, "*/30 * * * *", range(24), (0, 30)),
    ({"minute": "0"}, "0 * * * *", range(24), (0,)),
    ({"hour": "0-3", "minute": "*/20"}, "*/20 0-3 * * *", range(4), (0, 20, 40)),
    ({"hour": "1,2", "minute": "15,45"}, "15,45 1,2 * * *", (1, 2), (15, 45)),
]


def reference(zone: ZoneInfo, walls: list[datetime], gap: str, repeated: str) -> list[datetime]:
    """The fire instants of matching wall times, mapped by the policy (PEP 495 folds)."""
    instants = set()
    for wall in walls:
        first = wall.replace(tzinfo=zone, fold=0)
        second = wall.replace(tzinfo=zone, fold=1)
        first_offset, second_offset = first.utcoffset(), second.utcoffset()
        assert first_offset is not None
        assert second_offset is not None
        if first_offset < second_offset:  # skipped by the clocks
            if gap == "shift":
                instants.add((wall - first_offset).replace(tzinfo=UTC))
            continue
        instants.add((wall - first_offset).replace(tzinfo=UTC))
        if first_offset > second_offset and repeated == "both":
            instants.add((wall - second_offset).replace(tzinfo=UTC))
    return sorted(instants)


@pytest.mark.parametrize(("zone_name", "day"), CHANGES, ids=[f"{z}-{d}" for z, d in CHANGES])
@pytest.mark.parametrize(("gap", "repeated"), POLICIES, ids=[f"{g}-{r}" for g, r in POLICIES])
def test_every_fire_time_around_a_change(
    zone_name: str, day: date, gap: str, repeated: str
) -> None:
    zone = ZoneInfo(zone_name)
    first_day = datetime.combine(day - timedelta(days=1), datetime.min.time())
    # Matching walls of five days; fire times are compared over the middle three.
    for fields, line, hours, minutes in SCHEDULES:
        walls = [
            first_day + timedelta(days=d - 1, hours=h, minutes=m)
            for d in range(5)
            for h in hours
            for m in minutes
        ]
        expected = reference(zone, walls, gap, repeated)
        begin = first_day.replace(tzinfo=zone).astimezone(UTC)
        end = begin + timedelta(days=3)
        window = [t for t in expected if begin < t <= end]
        for trigger in (
            CronTrigger(**fields, timezone=zone, dst_gap=gap, dst_repeated=repeated),
            CronTrigger.from_crontab(line, zone, dst_gap=gap, dst_repeated=repeated),
        ):
            got: list[datetime] = []
            t = begin
            while True:
                found = trigger.next(t)
                assert found is not None
                if found > end:
                    break
                # Expressed with the offset and the name in force at that instant.
                local = found.astimezone(zone)
                assert found.utcoffset() == local.utcoffset()
                assert found.tzname() == local.tzname()
                got.append(found)
                t = found
            assert got == window, f"{trigger!r}"
            # From just before each fire time, and from inside each gap between them:
            for previous, following in zip([begin, *window], window, strict=False):
                micro = timedelta(microseconds=1)
                assert trigger.next(following - micro) == following
                middle = previous + (following - previous) / 2
                assert trigger.next(middle) == following


@pytest.mark.parametrize(("zone_name", "day"), CHANGES, ids=[f"{z}-{d}" for z, d in CHANGES])
@pytest.mark.parametrize(("gap", "repeated"), POLICIES, ids=[f"{g}-{r}" for g, r in POLICIES])
def test_calendarinterval_agrees_with_a_daily_cron(
    zone_name: str, day: date, gap: str, repeated: str
) -> None:
    # Every time of day, every 15 minutes, through the day of the change.
    after = datetime.combine(day - timedelta(days=1), datetime.min.time(), ZoneInfo(zone_name))
    for minutes in range(0, 24 * 60, 15):
        hour, minute = divmod(minutes, 60)
        policy = {"dst_gap": gap, "dst_repeated": repeated, "timezone": zone_name}
        daily = CalendarIntervalTrigger(
            days=1, hour=hour, minute=minute, start_date=day - timedelta(days=3), **policy
        )
        matching = CronTrigger(hour=hour, minute=minute, **policy)
        a: datetime | None = after
        b: datetime | None = after
        for _ in range(4):
            assert a is not None
            assert b is not None
            a, b = daily.next(a), matching.next(b)
            assert a == b
            assert a is not None
            assert b is not None
            assert (a.utcoffset(), a.tzname()) == (b.utcoffset(), b.tzname())


# --- properties -----------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)

# The 2026 changes of the strategies' zones, as UTC instants.
_CHANGES = [
    (NEW_YORK, datetime(2026, 3, 8, 7, tzinfo=UTC)),
    (NEW_YORK, datetime(2026, 11, 1, 6, tzinfo=UTC)),
    (LONDON, datetime(2026, 3, 29, 1, tzinfo=UTC)),
    (LONDON, datetime(2026, 10, 25, 1, tzinfo=UTC)),
    (LORD_HOWE, datetime(2026, 4, 4, 15, tzinfo=UTC)),
    (LORD_HOWE, datetime(2026, 10, 3, 15, 30, tzinfo=UTC)),
    ("Pacific/Chatham", datetime(2026, 4, 4, 14, tzinfo=UTC)),
    ("Pacific/Chatham", datetime(2026, 9, 26, 14, tzinfo=UTC)),
    (HAVANA, datetime(2026, 3, 8, 5, tzinfo=UTC)),
    (HAVANA, datetime(2026, 11, 1, 5, tzinfo=UTC)),
]
assert {zone for zone, _ in _CHANGES} < set(ZONES)


def _in_zone(change: tuple[str, datetime], seconds: int) -> datetime:
    zone, instant = change
    return (instant + timedelta(seconds=seconds)).astimezone(ZoneInfo(zone))


#: An aware ``after`` (in its zone, microseconds included) from 36 hours before to 12
#: hours after a change, so that a two-day window covers the change.
near_a_change = st.builds(
    lambda change, seconds, micro: _in_zone(change, seconds) + timedelta(microseconds=micro),
    st.sampled_from(_CHANGES),
    st.integers(-36 * 3600, 12 * 3600),
    st.sampled_from([0, 0, 1, 999_999]),
)


def _hours_or_minutes(high: int) -> st.SearchStrategy[str]:
    values = st.lists(st.integers(0, high), min_size=1, max_size=4, unique=True)
    steps = st.sampled_from([1, 2, 3, 6] if high == 23 else [5, 10, 15, 20, 30])
    steps = steps.map(lambda n: f"*/{n}")
    return st.one_of(values.map(lambda v: ",".join(map(str, sorted(v)))), steps)


cron_fields = st.fixed_dictionaries(
    {"hour": _hours_or_minutes(23), "minute": _hours_or_minutes(59)},
    optional={"second": st.sampled_from(["0", "0,30", "*/20"])},
)

Window = tuple[datetime, datetime]


def _fires_in(trigger: Trigger, window: Window) -> list[datetime]:
    begin, end = window
    out: list[datetime] = []
    t = begin
    while True:
        found = trigger.next(t)
        if found is None or found > end:
            return out
        assert found > t, f"{trigger!r}: {found.isoformat()} is not after {t.isoformat()}"
        out.append(found)
        t = found


def _all_policies(
    build: Callable[[str, str], Trigger], window: Window
) -> dict[tuple[str, str], list[datetime]]:
    return {policy: _fires_in(build(*policy), window) for policy in POLICIES}


def _check_orders(found: dict[tuple[str, str], list[datetime]]) -> None:
    for times in found.values():
        assert all(a < b for a, b in pairwise(times))
    for gap in GAPS:
        assert set(found[gap, "first"]) <= set(found[gap, "both"])
    for repeated in REPEATS:
        assert set(found["skip", repeated]) <= set(found["shift", repeated])


def _matches(expr: str, value: int, high: int) -> bool:
    if expr.startswith("*/"):
        return value % int(expr[2:]) == 0
    return value in {int(v) for v in expr.split(",")} and value <= high


@PROPERTY_SETTINGS
@given(fields=cron_fields, after=near_a_change, crontab_form=st.booleans())
def test_cron_policies_increase_and_nest(
    fields: dict[str, str], after: datetime, crontab_form: bool
) -> None:
    zone = after.tzinfo
    assert isinstance(zone, ZoneInfo)

    def build(gap: str, repeated: str) -> Trigger:
        if crontab_form and "second" not in fields:
            line = f"{fields['minute']} {fields['hour']} * * *"
            return CronTrigger.from_crontab(line, zone, dst_gap=gap, dst_repeated=repeated)
        return CronTrigger(**fields, timezone=zone, dst_gap=gap, dst_repeated=repeated)

    found = _all_policies(build, (after, after + timedelta(days=2)))
    _check_orders(found)
    # Without shifting, every fire time is a matching wall time, as the clocks read it;
    # with "first", no wall time fires twice.
    for repeated in REPEATS:
        for t in found["skip", repeated]:
            local = t.astimezone(zone)
            assert _matches(fields["hour"], local.hour, 23)
            assert _matches(fields["minute"], local.minute, 59)
    for gap in GAPS:
        walls = [t.astimezone(zone).replace(tzinfo=None) for t in found[gap, "first"]]
        assert len(walls) == len(set(walls))


@PROPERTY_SETTINGS
@given(
    after=near_a_change,
    hour=st.integers(0, 23),
    minute=st.sampled_from([0, 15, 30, 45]),
    period=st.sampled_from([{"days": 1}, {"days": 2}, {"weeks": 1}, {"months": 1}]),
)
def test_calendarinterval_policies_increase_and_nest(
    after: datetime, hour: int, minute: int, period: dict[str, int]
) -> None:
    zone = after.tzinfo
    assert isinstance(zone, ZoneInfo)
    start = after.date() - timedelta(days=3)

    def build(gap: str, repeated: str) -> Trigger:
        return CalendarIntervalTrigger(
            **period,
            hour=hour,
            minute=minute,
            start_date=start,
            timezone=zone,
            dst_gap=gap,
            dst_repeated=repeated,
        )

    _check_orders(_all_policies(build, (after, after + timedelta(days=40))))


# --- errors ---------------------------------------------------------------------------

BAD_GAPS = ["skipp", "SKIP", "", "first", None, True, 1]
BAD_REPEATS = ["twice", "First", "", "skip", None, False, 2]


def _builders() -> list[Any]:
    return [
        pytest.param(lambda **kw: CronTrigger(hour=2, timezone=NEW_YORK, **kw), id="cron"),
        pytest.param(
            lambda **kw: CronTrigger.from_crontab("0 2 * * *", NEW_YORK, **kw), id="crontab"
        ),
        pytest.param(
            lambda **kw: CalendarIntervalTrigger(days=1, timezone=NEW_YORK, **kw),
            id="calendarinterval",
        ),
    ]


@pytest.mark.parametrize("build", _builders())
@pytest.mark.parametrize("value", BAD_GAPS, ids=repr)
def test_bad_dst_gap(build: Callable[..., Trigger], value: object) -> None:
    with pytest.raises(TriggerError) as info:
        build(dst_gap=value)
    assert isinstance(info.value, ValueError)
    assert info.value.field == "dst_gap"
    assert str(info.value) == (f"dst_gap: {value!r} is not a DST gap policy; use 'shift' or 'skip'")


@pytest.mark.parametrize("build", _builders())
@pytest.mark.parametrize("value", BAD_REPEATS, ids=repr)
def test_bad_dst_repeated(build: Callable[..., Trigger], value: object) -> None:
    with pytest.raises(TriggerError) as info:
        build(dst_repeated=value)
    assert info.value.field == "dst_repeated"
    assert str(info.value) == (
        f"dst_repeated: {value!r} is not a DST repeated-time policy; use 'first' or 'both'"
    )


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"kind": "cron", "hour": "2", "timezone": "UTC", "dst_gap": "skipp"}, "dst_gap"),
        ({"kind": "cron", "crontab": "@daily", "timezone": "UTC", "dst_gap": 1}, "dst_gap"),
        (
            {
                "kind": "calendarinterval",
                "days": 1,
                "start_date": "2026-01-01",
                "timezone": "UTC",
                "dst_repeated": "all",
            },
            "dst_repeated",
        ),
    ],
)
def test_bad_values_in_a_stored_dict(data: dict[str, Any], field: str) -> None:
    with pytest.raises(TriggerError) as info:
        trigger_from_dict(data)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("alias", "args"),
    [
        ("interval", {"minutes": 5}),
        ("date", {"run_date": "2026-03-08T02:30:00"}),
    ],
)
@pytest.mark.parametrize("name", ["dst_gap", "dst_repeated"])
def test_elapsed_time_triggers_take_no_dst_policy(
    alias: str, args: dict[str, Any], name: str
) -> None:
    with pytest.raises(TriggerError) as info:
        create_trigger(alias, {**args, name: "skip"}, default_timezone=ZoneInfo(NEW_YORK))
    assert info.value.field == name
    message = str(info.value)
    assert f"the {alias} trigger takes no argument {name!r}" in message
    assert "cron and calendarinterval" in message


def test_interval_and_date_refuse_it_directly_too() -> None:
    with pytest.raises(TriggerError, match="dst_gap: the interval trigger takes no"):
        IntervalTrigger(hours=1, timezone="UTC", dst_gap="skip")
    with pytest.raises(TriggerError, match="dst_repeated: the date trigger takes no"):
        DateTrigger("2026-11-01T01:30:00", timezone=NEW_YORK, dst_repeated="both")


@pytest.mark.parametrize(
    ("alias", "args", "meant"),
    [
        ("cron", {"hour": 2, "dst_gaps": "skip"}, "dst_gap"),
        ("cron", {"hour": 2, "dst_repeat": "both"}, "dst_repeated"),
        ("cron", {"hour": 2, "dstgap": "skip"}, "dst_gap"),
        ("calendarinterval", {"days": 1, "dst_repeats": "both"}, "dst_repeated"),
        ("calendarinterval", {"days": 1, "dst_gaps": "skip"}, "dst_gap"),
    ],
)
def test_misspelt_policy_names_suggest_the_right_one(
    alias: str, args: dict[str, Any], meant: str
) -> None:
    with pytest.raises(TriggerError) as info:
        create_trigger(alias, args, default_timezone=ZoneInfo(NEW_YORK))
    assert f"did you mean {meant!r}?" in str(info.value)


# --- values: storage, equality, repr, describe, registry ------------------------------


def _examples(gap: str, repeated: str) -> list[Trigger]:
    policy = {"dst_gap": gap, "dst_repeated": repeated}
    return [
        CronTrigger(hour=2, minute=30, timezone=NEW_YORK, **policy),
        CronTrigger.from_crontab("*/30 1 * * *", LONDON, **policy),
        CronTrigger(
            hour=1,
            start_date="2026-01-01",
            end_date="2027-01-01",
            timezone=HAVANA,
            **policy,
        ),
        CalendarIntervalTrigger(
            weeks=1, hour=1, minute=30, start_date="2026-10-04", timezone=LONDON, **policy
        ),
    ]


@pytest.mark.parametrize(("gap", "repeated"), POLICIES)
def test_to_dict_round_trip(gap: str, repeated: str) -> None:
    for trigger in _examples(gap, repeated):
        data = trigger.to_dict()
        assert data.get("dst_gap", "shift") == gap
        assert data.get("dst_repeated", "first") == repeated
        stored = json.loads(json.dumps(data))
        assert stored == data
        back = trigger_from_dict(stored)
        assert back == trigger
        assert back.to_dict() == data
        assert type(trigger).from_dict(stored) == trigger  # type: ignore[attr-defined]
        after = datetime(2026, 10, 24, tzinfo=UTC)
        assert fires(back, after.isoformat(), 5) == fires(trigger, after.isoformat(), 5)


def test_default_policies_are_not_stored() -> None:
    for trigger in _examples("shift", "first"):
        data = trigger.to_dict()
        assert "dst_gap" not in data
        assert "dst_repeated" not in data
        assert "dst_" not in repr(trigger)
    # What a job stored before the policies existed reads back with the defaults.
    old = {
        "kind": "cron",
        "crontab": "0 2 * * *",
        "start_date": None,
        "end_date": None,
        "timezone": NEW_YORK,
    }
    trigger = trigger_from_dict(old)
    assert isinstance(trigger, CronTrigger)
    assert (trigger.dst_gap, trigger.dst_repeated) == ("shift", "first")
    assert trigger.to_dict() == old
    explicit = {**old, "dst_gap": "shift", "dst_repeated": "first"}
    assert trigger_from_dict(explicit) == trigger
    assert trigger_from_dict(explicit).to_dict() == old


def test_only_non_default_policies_are_stored() -> None:
    data = CronTrigger(hour=2, timezone=NEW_YORK, dst_gap="skip").to_dict()
    assert data["dst_gap"] == "skip"
    assert "dst_repeated" not in data
    data = CalendarIntervalTrigger(days=1, timezone=NEW_YORK, dst_repeated="both").to_dict()
    assert data["dst_repeated"] == "both"
    assert "dst_gap" not in data


def test_policies_take_part_in_equality_and_hash() -> None:
    triggers = {(g, r): _examples(g, r) for g, r in POLICIES}
    for (g1, r1), (g2, r2) in product(POLICIES, POLICIES):
        for a, b in zip(triggers[g1, r1], triggers[g2, r2], strict=True):
            assert (a == b) == ((g1, r1) == (g2, r2))
            if a == b:
                assert hash(a) == hash(b)
    # The registry's cache of read-back triggers tells them apart.
    base = {"kind": "cron", "hour": "2", "timezone": NEW_YORK}
    assert trigger_from_dict(base) != trigger_from_dict({**base, "dst_gap": "skip"})


def test_repr() -> None:
    assert repr(CronTrigger(hour=2, timezone=NEW_YORK, dst_gap="skip")) == (
        "CronTrigger(hour='2', timezone='America/New_York', dst_gap='skip')"
    )
    trigger = CronTrigger.from_crontab("0 * * * *", LONDON, dst_gap="skip", dst_repeated="both")
    assert repr(trigger) == (
        "CronTrigger.from_crontab('0 * * * *', timezone='Europe/London', dst_gap='skip', "
        "dst_repeated='both')"
    )
    calendar_trigger = CalendarIntervalTrigger(
        days=1, start_date="2026-01-01", timezone=LONDON, dst_repeated="both"
    )
    assert repr(calendar_trigger) == (
        "CalendarIntervalTrigger(days=1, start_date='2026-01-01', timezone='Europe/London', "
        "dst_repeated='both')"
    )


def test_describe() -> None:
    assert CronTrigger(hour=2, minute=30, timezone=NEW_YORK, dst_gap="skip").describe() == (
        "at 02:30 (America/New_York), skipping wall times missing on DST change days"
    )
    assert CronTrigger.from_crontab("0 * * * *", LONDON, dst_repeated="both").describe() == (
        "at minute 0 of every hour (Europe/London), firing twice at wall times repeated "
        "on DST change days"
    )
    both = CalendarIntervalTrigger(
        days=1,
        hour=1,
        start_date="2026-01-01",
        timezone=LONDON,
        dst_gap="skip",
        dst_repeated="both",
    )
    assert both.describe() == (
        "every day at 01:00 (Europe/London) from 2026-01-01, skipping wall times missing "
        "and firing twice at wall times repeated on DST change days"
    )
    # The defaults add nothing.
    assert CronTrigger(hour=2, timezone=NEW_YORK).describe() == "at 02:00 (America/New_York)"
    # Combined triggers separate their children with semicolons; a policy does not.
    combined = OrTrigger(
        [
            CronTrigger(hour=2, timezone=NEW_YORK, dst_gap="skip"),
            CronTrigger(hour=9, timezone="UTC"),
        ]
    )
    assert combined.describe().count(";") == 1


@pytest.mark.parametrize(
    ("alias", "args", "after", "expected"),
    [
        (
            "cron",
            {"hour": 2, "minute": 30, "dst_gap": "skip"},
            "2026-03-07T12:00:00-05:00",
            "2026-03-09T02:30:00-04:00",
        ),
        (
            "cron",
            {"hour": 1, "minute": 30, "dst_repeated": "both"},
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:30:00-05:00",
        ),
        (
            "calendarinterval",
            {"days": 1, "hour": 2, "start_date": "2026-03-01", "dst_gap": "skip"},
            "2026-03-07T12:00:00-05:00",
            "2026-03-09T02:00:00-04:00",
        ),
    ],
)
def test_registry_passes_the_policies_through(
    alias: str, args: dict[str, Any], after: str, expected: str
) -> None:
    # What add_job(func, "cron", hour=2, dst_gap="skip") builds.
    trigger = create_trigger(alias, args, default_timezone=ZoneInfo(NEW_YORK))
    assert fires(trigger, after, 1) == [expected]
    assert trigger_from_dict(trigger.to_dict()) == trigger
