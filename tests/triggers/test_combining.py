from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from horae import TriggerError
from horae.triggers import trigger_from_dict
from horae.triggers.combining import AndTrigger, OrTrigger
from horae.triggers.date import DateTrigger
from horae.triggers.interval import IntervalTrigger

from .strategies import zone_names

UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def every(minutes: int, start: datetime = T0, **kwargs: Any) -> IntervalTrigger:
    return IntervalTrigger(minutes=minutes, start_date=start, timezone="UTC", **kwargs)


def fires(trigger: Any, after: datetime, count: int) -> list[datetime | None]:
    out: list[datetime | None] = []
    t: datetime | None = after
    for _ in range(count):
        assert t is not None
        t = trigger.next(t)
        out.append(t)
        if t is None:
            break
    return out


def test_and_fires_where_all_children_fire() -> None:
    trigger = AndTrigger([every(20), every(30)])
    assert fires(trigger, T0, 3) == [T0 + timedelta(hours=h) for h in (1, 2, 3)]


def test_and_is_exhausted_when_a_child_is() -> None:
    trigger = AndTrigger([every(10), every(10, end_date=T0 + timedelta(minutes=20))])
    assert fires(trigger, T0, 5) == [T0 + timedelta(minutes=10), T0 + timedelta(minutes=20), None]


def test_and_gives_up_when_children_never_agree() -> None:
    # Both every 2 minutes, one second apart: they never coincide.
    never = AndTrigger([every(2), every(2, start=T0 + timedelta(seconds=1))])
    assert never.next(T0) is None


def test_and_of_dates_that_differ_is_none() -> None:
    trigger = AndTrigger(
        [DateTrigger(T0 + timedelta(hours=1)), DateTrigger(T0 + timedelta(hours=2))]
    )
    assert trigger.next(T0) is None


def test_and_compares_instants_across_zones() -> None:
    paris = IntervalTrigger(hours=1, start_date="2026-01-01T01:00:00", timezone="Europe/Paris")
    trigger = AndTrigger([paris, every(30)])
    fire = trigger.next(T0 - timedelta(hours=1))
    assert fire == T0


def test_or_fires_at_the_earliest_child_once_per_instant() -> None:
    trigger = OrTrigger([every(20), every(30)])
    got = fires(trigger, T0, 5)
    assert got == [T0 + timedelta(minutes=m) for m in (20, 30, 40, 60, 80)]


def test_or_is_exhausted_only_when_all_children_are() -> None:
    trigger = OrTrigger(
        [DateTrigger(T0 + timedelta(hours=2)), DateTrigger(T0 + timedelta(hours=1))]
    )
    assert fires(trigger, T0, 3) == [T0 + timedelta(hours=1), T0 + timedelta(hours=2), None]


@pytest.mark.parametrize("cls", [AndTrigger, OrTrigger])
@pytest.mark.parametrize(
    ("triggers", "shown"),
    [
        ([], "[]"),
        ("every(5)", "'every(5)'"),
        (None, "None"),
        ([5], "triggers[0]: 5"),
        ([{"kind": "date"}], "triggers[0]"),
    ],
)
def test_invalid_children(cls: type[Any], triggers: Any, shown: str) -> None:
    with pytest.raises(TriggerError) as info:
        cls(triggers)
    assert info.value.field == "triggers"
    assert shown in str(info.value)


def test_repr_describe_and_dict() -> None:
    a, b = every(5), DateTrigger("2027-02-14 16:38:05", timezone="Europe/Paris")
    both = AndTrigger([a, b])
    assert repr(both) == f"AndTrigger([{a!r}, {b!r}])"
    assert both.describe() == (
        "when all of: every 5 minutes from 2026-01-01 00:00 UTC; once at 2027-02-14 16:38:05 CET"
    )
    assert OrTrigger([a]).describe() == "when any of: every 5 minutes from 2026-01-01 00:00 UTC"
    assert both.to_dict() == {"kind": "and", "triggers": [a.to_dict(), b.to_dict()]}
    nested = OrTrigger([both, a])
    assert nested.describe() == f"when any of: ({both.describe()}); {a.describe()}"


def test_nested_round_trip() -> None:
    nested = OrTrigger([AndTrigger([every(20), every(30)]), DateTrigger(T0)])
    data = json.loads(json.dumps(nested.to_dict()))
    assert trigger_from_dict(data) == nested
    assert OrTrigger.from_dict(data) == nested
    assert nested != OrTrigger([AndTrigger([every(30), every(20)]), DateTrigger(T0)])


def test_from_dict_rejects_bad_children() -> None:
    with pytest.raises(TriggerError) as info:
        AndTrigger.from_dict({"kind": "and", "triggers": "nope"})
    assert info.value.field == "triggers"
    with pytest.raises(TriggerError) as info:
        AndTrigger.from_dict({"kind": "and", "triggers": [], "jitter": 1})
    assert info.value.field == "jitter"


starts = st.integers(0, 3600).map(lambda s: T0 + timedelta(seconds=s))
intervals = st.integers(5, 240)


@settings(max_examples=150, deadline=None)
@given(
    children=st.lists(st.tuples(intervals, starts, zone_names), min_size=1, max_size=3),
    after_minutes=st.integers(-120, 600),
)
def test_properties(children: list[tuple[int, datetime, str]], after_minutes: int) -> None:
    triggers = [IntervalTrigger(minutes=m, start_date=s, timezone=z) for m, s, z in children]
    after = T0 + timedelta(minutes=after_minutes)
    horizon = T0 + timedelta(days=1)
    # The fire times of each child, up to the horizon, as sets of instants.
    sets = []
    for trigger in triggers:
        times, t = set(), trigger.next(after)
        while t is not None and t <= horizon:
            times.add(t)
            t = trigger.next(t)
        sets.append(times)

    union = sorted(set.union(*sets))
    got_or = [t for t in fires(OrTrigger(triggers), after, len(union) + 1) if t is not None]
    assert got_or[: len(union)] == union
    assert all(a < b for a, b in itertools.pairwise(got_or))

    common = sorted(set.intersection(*sets))[:5]
    if common:
        assert fires(AndTrigger(triggers), after, len(common)) == common

    for combined in (AndTrigger(triggers), OrTrigger(triggers)):
        assert trigger_from_dict(json.loads(json.dumps(combined.to_dict()))) == combined
