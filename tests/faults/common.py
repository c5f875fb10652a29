"""What the fault tests share: the store they run on, their clients, waiting, figures.

``test_faults.py`` (kills, outage) and ``test_controls.py`` (the job controls across
processes) both start a fleet of workers on a fresh place, add jobs through a client
scheduler, wait for the jobs to settle and count from the store's run history.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from horae import AsyncScheduler, Run

from .accounting import Tally, fire_times
from .fleet import Fleet, Place

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "build" / "figures" / "faults.txt"
UTC = timezone.utc
STORES = ["sqlite", "postgres", "redis"]

#: From the moment the jobs are being added to their first fire time.
LEAD = 2.0
#: How long after the last fire time the suite waits for everything to settle before it
#: counts anyway (what is still in flight then counts as unfinished). Normally ~5 s.
SETTLE_TIMEOUT = 60.0


def client(place: Place) -> AsyncScheduler:
    return AsyncScheduler(place.make_store(), role="client", timezone="UTC")


async def prepare(place: Place) -> None:
    """Create the store's tables before the workers start, so that they do not race to."""
    async with client(place):
        pass


async def add_jobs(
    place: Place, specs: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, list[datetime]], dict[str, int]]:
    """Add the jobs; their fire times (from their triggers) and retry attempts."""
    async with client(place) as scheduler:
        jobs = await scheduler.add_jobs(specs)
    schedule = {job.id: fire_times(job) for job in jobs}
    attempts = {job.id: job.retry.attempts if job.retry else 1 for job in jobs}
    return schedule, attempts


def first_fire_time(lead: float = LEAD, *, even: bool = True) -> datetime:
    """The whole second (made even with ``even``) ``lead`` seconds from now, cut down."""
    first = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
    # Even, so that the cron jobs' */2 fires on the interval jobs' grid.
    return first + timedelta(seconds=first.second % 2 if even else 0)


async def sleep_until(when: datetime) -> None:
    await anyio.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))


async def settle(
    place: Place,
    workers: Fleet,
    job_ids: Sequence[str],
    last: datetime,
    timeout: float = SETTLE_TIMEOUT,
) -> float:
    """Wait until every trigger is exhausted and no run is in flight; the seconds it took.

    Bounded: after ``timeout`` the suite goes on and counts what is left in flight as
    unfinished.
    """
    await sleep_until(last)
    began = time.monotonic()
    async with client(place) as scheduler:
        with anyio.move_on_after(timeout):
            while True:
                workers.check_alive()
                if not await scheduler.get_jobs():
                    for job_id in job_ids:
                        # In-flight runs come first.
                        runs = await scheduler.get_runs(job_id, limit=1)
                        if runs and runs[0].outcome is None:
                            break
                    else:
                        break
                await anyio.sleep(0.5)
    return time.monotonic() - began


async def read_history(
    place: Place, job_ids: Sequence[str], note: str = ""
) -> dict[str, list[Run]]:
    """The run history of each job, once every job is gone (``note`` goes with the
    failure if one is left: a seed, say)."""
    async with client(place) as scheduler:
        history = {job_id: await scheduler.get_runs(job_id, limit=100_000) for job_id in job_ids}
        left = await scheduler.get_jobs()
    # What the jobs left behind are waiting for: their state and their last runs.
    assert not left, f"every trigger is exhausted, yet jobs are left {note}:\n" + "\n".join(
        f"{job.id} next_run_time={job.next_run_time} pause_note={job.pause_note!r} runs="
        + ", ".join(
            f"{run.scheduled_time:%H:%M:%S.%f}#{run.attempt}:{run.outcome}@{run.scheduler_id}"
            for run in history.get(job.id, [])[:4]
        )
        for job in left[:10]
    )
    return history


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """Print a line of figures and keep it in ``build/figures/faults.txt`` (replacing the
    line of the same test and store)."""
    with capsys.disabled():
        print(f"\n{line}")
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    prefix = line.split(":", 1)[0] + ":"
    kept = []
    if FIGURES.exists():
        kept = [x for x in FIGURES.read_text().splitlines() if not x.startswith(prefix)]
    FIGURES.write_text("\n".join([*kept, line]) + "\n")


def figures(tally: Tally) -> str:
    outcomes = "+".join(f"{k}:{v}" for k, v in sorted(tally.outcomes.items()))
    return (
        f"fire_times={tally.fire_times} lost={len(tally.lost)} "
        f"duplicated={len(tally.duplicated)} unfinished={len(tally.unfinished)} "
        f"abandoned={tally.abandoned} retried={tally.retried} "
        f"unretried={len(tally.unretried)}+{len(tally.unretried_gone)} "
        f"overlaps={len(tally.overlaps)} "
        f"ended_but_abandoned={tally.ended_but_abandoned} runs={outcomes}"
    )


def check(tally: Tally) -> None:
    """The invariants: each fire time one final outcome, none lost, none twice.

    Failed runs whose job's retry policy had attempts left must have been retried, also
    those taken over after the job's last fire time (``unretried_gone``): such a job is
    kept until its last run ends (test_takeover_retries_the_last_fire_time shows it on
    its own).
    """
    assert tally.problems() == {}
    assert not tally.unretried, (
        f"failed runs whose retry policy had attempts left, not retried: {tally.unretried[:10]}"
    )
    assert not tally.unretried_gone, (
        f"runs abandoned after their job's last fire time, not retried: {tally.unretried_gone[:10]}"
    )
