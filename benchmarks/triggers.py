"""How fast CronTrigger.next() is, beside APScheduler 3 and croniter, measured in one run.

Not part of the test run. Run it in a virtualenv that has horae plus the competitors:

    python3 -m venv /work/benchvenv
    /work/benchvenv/bin/pip install -e . 'apscheduler==3.11.*' croniter
    /work/benchvenv/bin/python benchmarks/triggers.py

Each row chains ``t = next(t)`` from a fixed start and prints calls per second (best of
several runs). A competitor that is not installed shows "n/a". croniter is measured two
ways: as a scheduler calls a stateless trigger (``croniter(expr, t).get_next(datetime)``,
one parse per call) and as its own iterator (``get_next()`` on one object, its fastest
mode); the ratio column uses the faster of the two.

Targets: horae >= 3x APScheduler 3 and >= 2x croniter on every row; the sparse row under
1 ms per call.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from horae.triggers.cron import CronTrigger

try:
    from apscheduler.triggers.cron import CronTrigger as ApsCronTrigger
except ImportError:  # pragma: no cover - optional competitor
    ApsCronTrigger = None

try:
    from croniter import croniter
except ImportError:  # pragma: no cover - optional competitor
    croniter = None

Step = Callable[[datetime], datetime]


class Case:
    """One benchmark row: the same schedule in each library, and where chains start."""

    def __init__(
        self,
        title: str,
        zone: str,
        starts: list[str],
        chain: int,
        horae: Callable[[], CronTrigger],
        aps: Callable[[Any], Any] | None,
        cron_expr: str,
        cron_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.title = title
        self.zone = ZoneInfo(zone)
        self.starts = [datetime.fromisoformat(s).replace(tzinfo=self.zone) for s in starts]
        self.chain = chain
        self.horae = horae
        self.aps = aps
        self.cron_expr = cron_expr
        self.cron_kwargs = cron_kwargs or {}


CASES = [
    Case(
        "*/5 * * * * (UTC)",
        "UTC",
        ["2026-01-01T00:00:00"],
        2000,
        lambda: CronTrigger.from_crontab("*/5 * * * *", timezone="UTC"),
        lambda aps: aps.from_crontab("*/5 * * * *", timezone=ZoneInfo("UTC")),
        "*/5 * * * *",
    ),
    Case(
        "0 9 * * mon-fri (Europe/Paris)",
        "Europe/Paris",
        ["2026-01-01T00:00:00"],
        2000,
        lambda: CronTrigger.from_crontab("0 9 * * mon-fri", timezone="Europe/Paris"),
        lambda aps: aps.from_crontab("0 9 * * mon-fri", timezone=ZoneInfo("Europe/Paris")),
        "0 9 * * mon-fri",
    ),
    Case(
        "second='*/10' (UTC)",
        "UTC",
        ["2026-01-01T00:00:00"],
        2000,
        lambda: CronTrigger(second="*/10", timezone="UTC"),
        lambda aps: aps(second="*/10", timezone=ZoneInfo("UTC")),
        "* * * * * */10",  # croniter: a sixth field is seconds
    ),
    Case(
        "sparse 0 0 29 2 mon, AND (UTC)",
        "UTC",
        ["2026-01-01T00:00:00"],
        20,
        lambda: CronTrigger(month=2, day=29, day_of_week="mon", timezone="UTC"),
        lambda aps: aps(month=2, day=29, day_of_week="mon", timezone=ZoneInfo("UTC")),
        "0 0 29 2 mon",
        {"day_or": False},
    ),
    Case(
        "hourly across DST (Lord_Howe)",
        "Australia/Lord_Howe",
        # 48-hour chains over the 2026 changes (30-minute fall-back and spring-forward)
        ["2026-04-04T00:00:00", "2026-10-03T00:00:00"],
        48,
        lambda: CronTrigger.from_crontab("0 * * * *", timezone="Australia/Lord_Howe"),
        lambda aps: aps.from_crontab("0 * * * *", timezone=ZoneInfo("Australia/Lord_Howe")),
        "0 * * * *",
    ),
]


def _rate(make_step: Callable[[], Step], case: Case, seconds: float) -> float:
    """Calls per second of ``step``, chained from each start; best of a few runs."""
    step = make_step()
    for start in case.starts:  # warm up (and fail early if the library cannot do it)
        step(start)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while True:
        calls = 0
        began = time.perf_counter()
        for _ in range(5):
            for start in case.starts:
                t = start
                for _ in range(case.chain):
                    t = step(t)
                calls += case.chain
        elapsed = time.perf_counter() - began
        best = max(best, calls / elapsed)
        if time.perf_counter() > deadline:
            return best


def _horae(case: Case) -> Step:
    trigger = case.horae()

    def step(t: datetime) -> datetime:
        result = trigger.next(t)
        assert result is not None
        return result

    return step


def _aps(case: Case) -> Step:
    assert ApsCronTrigger is not None
    assert case.aps is not None
    trigger = case.aps(ApsCronTrigger)

    def step(t: datetime) -> datetime:
        result: datetime = trigger.get_next_fire_time(t, t)
        return result

    return step


def _croniter_stateless(case: Case) -> Step:
    def step(t: datetime) -> datetime:
        result: datetime = croniter(case.cron_expr, t, **case.cron_kwargs).get_next(datetime)
        return result

    return step


def _croniter_iterator(case: Case) -> Step:
    # One iterator per chain: restarting at a chain's start re-creates it.
    state: dict[str, Any] = {}

    def step(t: datetime) -> datetime:
        it = state.get("it")
        if it is None or state.get("last") != t:
            it = croniter(case.cron_expr, t, **case.cron_kwargs)
            state["it"] = it
        result: datetime = it.get_next(datetime)
        state["last"] = result
        return result

    return step


def _fmt_rate(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:,.0f}"


def _fmt_ratio(mine: float, other: float | None) -> str:
    return "n/a" if other is None else f"{mine / other:.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    header = (
        f"{'case':34} {'horae/s':>10} {'us/call':>8} {'APS3/s':>10} "
        f"{'croniter/s':>10} {'(iter)/s':>10} {'vs APS3':>8} {'vs croniter':>11}"
    )
    print(header)
    print("-" * len(header))
    for case in CASES:
        mine = _rate(lambda case=case: _horae(case), case, args.seconds)
        aps = (
            _rate(lambda case=case: _aps(case), case, args.seconds)
            if ApsCronTrigger is not None
            else None
        )
        cron_stateless = cron_iter = None
        if croniter is not None:
            cron_stateless = _rate(lambda case=case: _croniter_stateless(case), case, args.seconds)
            cron_iter = _rate(lambda case=case: _croniter_iterator(case), case, args.seconds)
        cron_best = max(cron_stateless, cron_iter) if cron_iter and cron_stateless else None
        print(
            f"{case.title:34} {_fmt_rate(mine):>10} {1e6 / mine:8.1f} {_fmt_rate(aps):>10} "
            f"{_fmt_rate(cron_stateless):>10} {_fmt_rate(cron_iter):>10} "
            f"{_fmt_ratio(mine, aps):>8} {_fmt_ratio(mine, cron_best):>11}"
        )


if __name__ == "__main__":
    main()
