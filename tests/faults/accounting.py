"""Counting what happened to every fire time, from the store's run history and the job log.

The rules (DESIGN.md: "every fire time ends as one Run outcome"; "none is fired twice"):

- Each fire time of a job, computed from its trigger, has a chain of runs in the history:
  attempts 1..n, each but the last ``abandoned``, ``error`` or ``timeout``, the last one
  final (``success``, ``missed``, ``skipped``, or a failure with no attempt left).
- **lost**: a fire time without any run; **unfinished**: a chain still in flight;
- **duplicated**: a fire time with two runs of one attempt, or a run after a final one
  (success, missed, skipped), or two executions that the job log shows ending well for
  runs the store counts as successes;
- **overlaps** (``max_instances=1``): two executions of one job overlapping in time, from
  the job log's start and end stamps; a run of a killed process ends at its kill time.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from horae import Job, Run, RunOutcome

FINAL = {RunOutcome.SUCCESS, RunOutcome.MISSED, RunOutcome.SKIPPED}
FAILED = {RunOutcome.ABANDONED, RunOutcome.ERROR, RunOutcome.TIMEOUT}

FireTime = tuple[str, datetime]


def fire_times(job: Job) -> list[datetime]:
    """Every fire time of ``job`` from its first to its trigger's end."""
    times = []
    t = job.next_run_time
    while t is not None:
        times.append(t)
        t = job.trigger.next(t)
    return times


@attrs.frozen
class Execution:
    """One call of the job function, from the job log."""

    run_id: str
    job_id: str
    scheduled_time: datetime
    attempt: int
    pid: int
    started: float
    ended: float | None  # None: no end line (killed, or never ended)
    ok: bool | None
    key: str | None = None  # current_run().key as the job saw it
    cancelled: bool = False  # the run was cancelled (overlap="cancel_other")


def read_job_log(paths: Iterable[Path], kill_times: Mapping[int, float]) -> list[Execution]:
    starts: dict[str, dict[str, Any]] = {}
    ends: dict[str, dict[str, Any]] = {}
    for path in paths:
        if not path.exists():
            continue
        for text in path.read_text(encoding="utf-8").splitlines():
            if not text.endswith("}"):
                continue  # cut short by a kill
            line = json.loads(text)
            (starts if line["kind"] == "start" else ends)[line["run_id"]] = line
    executions = []
    for run_id, start in starts.items():
        end = ends.get(run_id)
        ended = end["mono"] if end else kill_times.get(start["pid"])
        executions.append(
            Execution(
                run_id=run_id,
                job_id=start["job_id"],
                scheduled_time=datetime.fromisoformat(start["scheduled_time"]),
                attempt=start["attempt"],
                pid=start["pid"],
                started=start["mono"],
                ended=ended,
                ok=end["ok"] if end else None,
                key=start.get("key"),
                cancelled=bool(end and end.get("cancelled")),
            )
        )
    return executions


@attrs.define
class Tally:
    fire_times: int = 0
    outcomes: Counter[str] = attrs.field(factory=Counter)
    lost: list[FireTime] = attrs.field(factory=list)
    unfinished: list[FireTime] = attrs.field(factory=list)
    duplicated: list[tuple[FireTime, str]] = attrs.field(factory=list)
    unexpected: list[FireTime] = attrs.field(factory=list)  # a run for no fire time
    retried: int = 0  # fire times with more than one attempt
    abandoned: int = 0  # runs recorded abandoned
    #: failures that the job's retry policy should have retried, and did not
    unretried: list[FireTime] = attrs.field(factory=list)
    #: the same, for runs taken over (abandoned) after the job's last fire time, counted
    #: apart: the job must have been kept for them until its last run ended (see
    #: test_takeover_retries_the_last_fire_time)
    unretried_gone: list[FireTime] = attrs.field(factory=list)
    overlaps: list[tuple[str, str, str]] = attrs.field(factory=list)
    #: executions that never ended although their process was not killed
    unended: list[str] = attrs.field(factory=list)
    #: executions in the job log whose run the store does not know
    unknown: list[str] = attrs.field(factory=list)
    #: successes in the store without an execution that ended well in the job log
    unexecuted: list[str] = attrs.field(factory=list)
    #: executions that ended well but whose run the store records abandoned (the
    #: process was killed, or lost its lease, after the function returned)
    ended_but_abandoned: int = 0

    def problems(self) -> dict[str, list[Any]]:
        found = {
            "lost": self.lost,
            "unfinished": self.unfinished,
            "duplicated": self.duplicated,
            "unexpected": self.unexpected,
            "overlaps": self.overlaps,
            "unended": self.unended,
            "unknown": self.unknown,
            "unexecuted": self.unexecuted,
        }
        return {name: items[:10] for name, items in found.items() if items}


def count(
    schedule: Mapping[str, Sequence[datetime]],
    retry_attempts: Mapping[str, int],
    history: Mapping[str, Sequence[Run]],
    executions: Sequence[Execution],
) -> Tally:
    """Count what became of every fire time of ``schedule`` (job id -> fire times).

    ``retry_attempts`` holds each job's ``Retry.attempts`` (1 without a policy).
    """
    tally = Tally()
    runs_by_id: dict[str, Run] = {}
    for job_id, fire in schedule.items():
        chains: dict[datetime, list[Run]] = defaultdict(list)
        for run in history.get(job_id, ()):
            chains[run.scheduled_time].append(run)
            runs_by_id[str(run.id)] = run
            tally.outcomes[run.outcome.value if run.outcome else "in flight"] += 1
            if run.outcome is RunOutcome.ABANDONED:
                tally.abandoned += 1
        tally.unexpected += [(job_id, t) for t in chains if t not in set(fire)]
        for t in fire:
            tally.fire_times += 1
            key = (job_id, t)
            chain = sorted(chains.get(t, ()), key=lambda r: r.attempt)
            if not chain:
                tally.lost.append(key)
                continue
            if any(run.outcome is None for run in chain):
                tally.unfinished.append(key)
                continue
            attempts = [run.attempt for run in chain]
            if attempts != list(range(1, len(chain) + 1)):
                tally.duplicated.append((key, f"attempts {attempts}"))
                continue
            if any(run.outcome not in FAILED for run in chain[:-1]):
                outcomes = [run.outcome.value for run in chain if run.outcome]
                tally.duplicated.append((key, f"a run after a final one: {outcomes}"))
                continue
            if len(chain) > 1:
                tally.retried += 1
            if chain[-1].outcome in FAILED and len(chain) < retry_attempts.get(job_id, 1):
                # ERROR is retried only when the exception matches Retry.on (it does
                # here: every Exception); ABANDONED with Retry.abandoned (the default).
                last = chain[-1]
                gone = (
                    last.outcome is RunOutcome.ABANDONED
                    and last.finished_at is not None
                    and last.finished_at >= fire[-1]
                )
                (tally.unretried_gone if gone else tally.unretried).append(key)

    # --- the job log against the history
    good_ends: Counter[FireTime] = Counter()
    by_job: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        by_job[execution.job_id].append(execution)
        run = runs_by_id.get(execution.run_id)
        if run is None:
            tally.unknown.append(execution.run_id)
            continue
        if execution.ended is None:
            tally.unended.append(execution.run_id)
        if execution.ok:
            if run.outcome is RunOutcome.SUCCESS:
                good_ends[(execution.job_id, execution.scheduled_time)] += 1
            elif run.outcome is RunOutcome.ABANDONED:
                tally.ended_but_abandoned += 1
    tally.duplicated += [
        (key, f"{n} successful executions") for key, n in good_ends.items() if n > 1
    ]
    executed_ok = {e.run_id for e in executions if e.ok}
    tally.unexecuted += [
        run_id
        for run_id, run in runs_by_id.items()
        if run.outcome is RunOutcome.SUCCESS and run_id not in executed_ok
    ]
    for job_id, runs in by_job.items():
        runs.sort(key=lambda e: e.started)
        for a, b in itertools.pairwise(runs):
            if a.ended is not None and b.started < a.ended:
                tally.overlaps.append((job_id, a.run_id, b.run_id))
    return tally
