"""The job controls across scheduler processes, on every persistent store (issue 10).

Three real scheduler processes (``worker.py``) share one store, as in ``test_faults.py``;
the jobs (``jobs.hold``, ``jobs.fail``) write a start and an end line per run to a log,
with the run's fire time, attempt, key and process. Each test checks what the store's run
history and the job log say against the guarantee of one control, in real time, with
short intervals:

- ``test_overlap``: runs of 2.5 s every second, one job per overlap policy; never more
  than ``max_instances`` runs of a job at once in all the processes (``allow_all``:
  overlapping), and what each policy promises about the fire times that came meanwhile.
- ``test_on_crash``: runs of 1.5 s while processes are killed and restarted;
  ``on_crash="rerun"`` reruns every abandoned run (same ``Run.key``, ``attempt`` + 1) up
  to 3 attempts, ``on_crash="abandon"`` never does, even with a retry policy.
- ``test_fencing``: a process stalled (SIGSTOP) while it holds a job lease, then while
  it executes a run, until another process took over; after SIGCONT it neither starts
  the fire time again nor overwrites the record of the run taken over.
- ``test_max_runs``: ``max_runs=5`` every 0.3 s: 5 runs in all, then the job is gone.
- ``test_pause_after_failures``: a failing job every 0.3 s ends paused, with its note,
  after 3 failures (and at most 2 more that raced the pause).

Each test prints one line of figures, also written to ``build/figures/faults.txt``.
"""

from __future__ import annotations

import itertools
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from horae import Job, Retry, Run, RunOutcome
from horae.jobs import RERUN_ATTEMPTS  # attempts of on_crash="rerun" without a retry policy

from .accounting import Execution, count, read_job_log
from .common import (
    UTC,
    add_jobs,
    check,
    client,
    figures,
    first_fire_time,
    prepare,
    read_history,
    report,
    settle,
    sleep_until,
)
from .fleet import Fleet, Place, fleet, make_place
from .jobs import fail, hold
from .servers import PostgresServer, RedisServer

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.faults,
    pytest.mark.skipif(sys.platform == "win32", reason="the suite stops processes by signal"),
]

PROCESSES = 3
LEASE = 2.0
#: The first fire time is about this far away when the jobs are added (the workers are
#: up already).
LEAD = 1.5

# test_overlap
OVERLAP_EVERY = 1.0
OVERLAP_RUN = 2.5
OVERLAP_SPAN = 7.0  # seconds from the first fire time to the stop
OVERLAP_JOBS: dict[str, dict[str, Any]] = {
    "skip": {"overlap": "skip"},
    "buffer_one": {"overlap": "buffer_one"},
    "buffer_one_coalesce": {"overlap": "buffer_one", "coalesce": True},
    "buffer_all": {"overlap": "buffer_all"},
    "buffer_all_x2": {"overlap": "buffer_all", "max_instances": 2},
    "cancel_other": {"overlap": "cancel_other"},
    "allow_all": {"overlap": "allow_all"},
}
#: How far a decision of one process may be from a run's start or end as another process
#: recorded them: a fire time is skipped from the store's count of runs in flight, which
#: a run enters at its release (before its start is stamped) and leaves at finish_run
#: (after its end is stamped); the gap is a store round trip or two.
STAMP_SLACK = timedelta(seconds=0.5)
#: A buffered fire time starts when the run before it ends: the process that ran it
#: frees the job with finish_run and looks for due jobs at once. A store round trip or
#: three, not a poll interval (SQLite's is 1 s) nor a fire interval.
BUFFER_GAP = 0.8
#: Job-log stamps of different processes are taken by different event loops: two runs
#: started one after the other by two processes may log their starts this far out of
#: order (buffer_all with two slots).
LOG_SKEW = 0.05

# test_on_crash
CRASH_JOBS = 8  # of each kind
CRASH_EVERY = 2.0
CRASH_RUN = 1.5
CRASH_SPAN = 8.0
CRASH_KILLS = 4

# test_fencing
FENCE_LEASE = 2.0

# test_max_runs, test_pause_after_failures
QUICK_EVERY = 0.3
#: The SQLite workers look for changes made by the others this often (1 s by default):
#: at 0.3 s between fire times, a process that has not seen the job's new next run time
#: sleeps through it, and the process that ran one fire time runs them all. The store's
#: count is shared only if several processes run the job.
QUICK_SQLITE_POLL = 0.1
MAX_RUNS = 5
PAUSE_AFTER = 3
#: Failures beyond PAUSE_AFTER that may race the pause (see test_pause_after_failures).
EXTRA_FAILURES = 2


def _ts(instant: datetime | None) -> float:
    assert instant is not None
    return instant.timestamp()


def most_at_once(intervals: Iterable[tuple[float, float]]) -> int:
    """The most intervals that overlap at one instant (an end and a start at the same
    instant do not overlap)."""
    points = sorted(
        itertools.chain.from_iterable(((start, 1), (end, -1)) for start, end in intervals)
    )
    most = current = 0
    for _, step in points:
        current += step
        most = max(most, current)
    return most


def by_job(executions: Iterable[Execution]) -> dict[str, list[Execution]]:
    found: dict[str, list[Execution]] = defaultdict(list)
    for execution in executions:
        found[execution.job_id].append(execution)
    for runs in found.values():
        runs.sort(key=lambda e: e.started)
    return found


async def stop_and_read(
    place: Place, workers: Fleet, job_ids: Sequence[str]
) -> tuple[dict[str, Job], dict[str, list[Run]]]:
    """Stop the workers (they wait for their runs) and read the jobs and run histories."""
    await workers.stop()
    async with client(place) as scheduler:
        jobs = {job.id: job for job in await scheduler.get_jobs()}
        history = {job_id: await scheduler.get_runs(job_id, limit=100_000) for job_id in job_ids}
    return jobs, history


async def add_endless(place: Place, specs: Sequence[dict[str, Any]]) -> None:
    """Add jobs whose triggers never end (``add_jobs`` would list all their fire times)."""
    async with client(place) as scheduler:
        await scheduler.add_jobs(specs)


def keyed(history: Sequence[Run]) -> dict[tuple[datetime, int], list[Run]]:
    """The records of each (fire time, attempt)."""
    found: dict[tuple[datetime, int], list[Run]] = defaultdict(list)
    for run in history:
        found[(run.scheduled_time, run.attempt)].append(run)
    return found


# ----------------------------------------------------------------------- overlap


def overlap_specs(first: datetime) -> list[dict[str, Any]]:
    return [
        {
            "func": hold,
            "trigger": "interval",
            "seconds": OVERLAP_EVERY,
            "id": job_id,
            "kwargs": {"seconds": OVERLAP_RUN},
            "start_date": first,
            "coalesce": False,  # every fire time its own record (but buffer_one_coalesce)
            "misfire_grace_time": None,
            **options,
        }
        for job_id, options in OVERLAP_JOBS.items()
    ]


def check_overlap(
    job: Job, first: datetime, history: Sequence[Run], runs: Sequence[Execution], stop: datetime
) -> dict[str, int]:
    """Check one job of test_overlap; its figures."""
    policy = job.overlap
    next_run_time = job.next_run_time
    assert next_run_time is not None, "the job has a next fire time"
    # Every fire time before the job's next run time was handed out and decided; those
    # from it on were not yet (buffer_all's backlog, or a fire time waiting for a slot).
    fire = fire_times_between(first, first, next_run_time - timedelta(microseconds=1))
    outcomes = Counter(run.outcome for run in history)
    # -- the store: one record per fire time and attempt, none for a fire time to come
    assert None not in outcomes, "runs still in flight after the workers stopped"
    twice = {key: rs for key, rs in keyed(history).items() if len(rs) > 1}
    assert not twice, f"fire times recorded twice: {twice}"
    assert {run.attempt for run in history} == {1}, "no run here is retried"
    assert {run.scheduled_time for run in history} <= set(fire), (
        "records for fire times that are not due or not its own"
    )
    if job.coalesce:
        # Each fire time is a run of its own or counted in the run that covered it.
        assert sum(1 + run.coalesced for run in history) == len(fire), "fire times lost"
    else:
        assert sorted(run.scheduled_time for run in history) == fire, "fire times without a record"
    # -- the job log against the store
    records = {str(run.id): run for run in history}
    assert all(e.run_id in records for e in runs), "executions the store does not know"
    assert all(e.ended is not None for e in runs), "executions that never ended"
    started = Counter((e.scheduled_time, e.attempt) for e in runs)
    assert max(started.values(), default=1) == 1, "a fire time started twice"
    executed = {e.run_id for e in runs}
    for run_id, run in records.items():
        ran = run.outcome in (RunOutcome.SUCCESS, RunOutcome.CANCELLED)
        assert (run_id in executed) == ran, f"{run.outcome} run {run_id} in the log?"
    assert {e.run_id for e in runs if e.cancelled} == {
        run_id for run_id, run in records.items() if run.outcome is RunOutcome.CANCELLED
    }, "the runs recorded cancelled are those the job saw cancelled"
    # -- never more than max_instances at once, in the job log and in the store's stamps
    logged = most_at_once((e.started, e.ended) for e in runs if e.ended is not None)
    stamped = most_at_once(
        (_ts(run.started_at), _ts(run.finished_at)) for run in history if run.started_at
    )
    if policy == "allow_all":
        assert logged >= 2, "runs of 2.5 s every second never overlapped"
    else:
        assert logged <= job.max_instances, f"{logged} runs at once (log)"
        assert stamped <= job.max_instances, f"{stamped} runs at once (store)"
    # -- what the policy says about the fire times that came while busy
    skipped = [run for run in history if run.outcome is RunOutcome.SKIPPED]
    ran = sorted(
        (run for run in history if run.started_at is not None), key=lambda r: r.scheduled_time
    )
    if policy == "skip":
        assert set(outcomes) <= {RunOutcome.SUCCESS, RunOutcome.SKIPPED}
        assert skipped, "runs of 2.5 s every second and nothing skipped"
        for record in skipped:
            # Skipped because a run was in flight at that moment.
            assert record.finished_at is not None
            assert any(
                _ts(run.started_at) - STAMP_SLACK.total_seconds()
                <= _ts(record.finished_at)
                <= _ts(run.finished_at) + STAMP_SLACK.total_seconds()
                for run in ran
            ), f"{record.scheduled_time} skipped while no run was in flight"
    elif policy == "buffer_one":
        assert set(outcomes) <= {RunOutcome.SUCCESS, RunOutcome.SKIPPED}
        if not job.coalesce:
            assert skipped, "the fire times beyond the one buffered are skipped"
        else:
            assert not skipped, "coalesced, not skipped"
            assert any(run.coalesced for run in ran), "nothing coalesced"
        check_buffered(ran, runs, ordered=not job.coalesce)
    elif policy == "buffer_all":
        assert set(outcomes) == {RunOutcome.SUCCESS}, "every fire time runs"
        backlog = fire_times_between(first, next_run_time, stop)
        assert backlog, "runs of 2.5 s every second, and no fire time waits"
        # In order of their fire times; one slot: each after the one before ended.
        starts = [e.started for e in sorted(runs, key=lambda e: e.scheduled_time)]
        assert all(b >= a - LOG_SKEW for a, b in itertools.pairwise(starts)), (
            "fire times started out of order"
        )
        if job.max_instances == 1:
            for a, b in itertools.pairwise(sorted(runs, key=lambda e: e.scheduled_time)):
                assert a.ended is not None
                assert b.started >= a.ended, f"{b.scheduled_time} started too soon"
            check_buffered(ran, runs, ordered=True)
        else:
            assert logged == job.max_instances, "the slots were never all busy"
    elif policy == "cancel_other":
        assert set(outcomes) <= {RunOutcome.SUCCESS, RunOutcome.CANCELLED, RunOutcome.SKIPPED}
        cancelled = [run for run in history if run.outcome is RunOutcome.CANCELLED]
        assert cancelled, "runs of 2.5 s every second and none cancelled"
        # The newer run starts after the older one was cancelled (its end line is
        # written as the cancellation reaches it, before its slot is freed).
        for a, b in itertools.pairwise(runs):
            assert a.ended is not None
            assert b.started >= a.ended, (
                f"{b.scheduled_time} started before {a.scheduled_time} ended"
            )
        # Each run cancelled was cancelled by the fire time that ran next.
        following = {a.run_id: b.scheduled_time for a, b in itertools.pairwise(runs)}
        for run in cancelled:
            reason = run.error or ""
            assert "cancelled by its job's fire time " in reason, reason
            before = datetime.fromisoformat(reason.split("fire time ", 1)[1].split(" ", 1)[0])
            # (The last one, cancelled as the workers stopped, by the fire time that
            # still waits.)
            assert before == following.get(str(run.id), next_run_time), (
                f"{run.scheduled_time} cancelled for {before}, followed by "
                f"{following.get(str(run.id))}"
            )
    else:
        assert policy == "allow_all"
        assert set(outcomes) == {RunOutcome.SUCCESS}, "every fire time runs"
    if policy != "buffer_all":
        # Nothing lags: the fire times are decided as they come (a buffered one waits
        # for the run in progress to end).
        lag = (stop - next_run_time).total_seconds()
        assert lag <= OVERLAP_RUN + 2 * OVERLAP_EVERY, f"decided {lag:.1f} s late"
    return {
        "runs": len(runs),
        "skipped": len(skipped),
        "cancelled": outcomes[RunOutcome.CANCELLED],
        "coalesced": sum(run.coalesced for run in history),
        "max": logged,
        "processes": len({e.pid for e in runs}),
    }


def fire_times_between(first: datetime, start: datetime, end: datetime) -> list[datetime]:
    """The fire times of an overlap job (from ``first``) from ``start`` to ``end``."""
    step = timedelta(seconds=OVERLAP_EVERY)
    times = (first + k * step for k in itertools.count())
    return [t for t in itertools.takewhile(lambda t: t <= end, times) if t >= start]


def check_buffered(ran: Sequence[Run], runs: Sequence[Execution], *, ordered: bool) -> None:
    """Each run after the first one of a buffering job waited for the one before: it
    starts as that one ends (within BUFFER_GAP); without coalescing, for a fire time
    that came while it ran (with it, the latest due then, which may have come just
    after)."""
    logged = {e.run_id: e for e in runs}
    for a, b in itertools.pairwise(ran):
        if ordered:
            assert a.finished_at is not None
            assert b.scheduled_time <= a.finished_at, (
                f"{b.scheduled_time} ran after {a.scheduled_time}, but it came later"
            )
        ended = logged[str(a.id)].ended
        assert ended is not None
        gap = logged[str(b.id)].started - ended
        assert gap <= BUFFER_GAP, f"{b.scheduled_time} started {gap:.2f} s after a free slot"


async def test_overlap(
    store: str,
    server: RedisServer | PostgresServer | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    began = time.monotonic()
    place = make_place(server, tmp_path, lease=LEASE)
    await prepare(place)
    with fleet(place, tmp_path, PROCESSES) as workers:
        await workers.wait_ready()
        first = first_fire_time(LEAD, even=False)
        await add_endless(place, overlap_specs(first))
        await sleep_until(first + timedelta(seconds=OVERLAP_SPAN))
        workers.check_alive()
        stop = datetime.now(UTC)
        jobs, history = await stop_and_read(place, workers, list(OVERLAP_JOBS))
    executions = by_job(read_job_log(workers.job_logs(), {}))
    found = {}
    failures = []
    for job_id in OVERLAP_JOBS:
        try:
            found[job_id] = check_overlap(
                jobs[job_id], first, history[job_id], executions.get(job_id, []), stop
            )
        except AssertionError as error:
            failures.append(f"{job_id}: {error}")
    parts = " ".join(
        f"{job_id}=runs:{f['runs']}/skipped:{f['skipped']}/cancelled:{f['cancelled']}"
        f"/coalesced:{f['coalesced']}/max:{f['max']}/processes:{f['processes']}"
        for job_id, f in found.items()
    )
    report(
        capsys,
        f"faults[{store}] overlap: processes={PROCESSES} every={OVERLAP_EVERY:g}s "
        f"run={OVERLAP_RUN:g}s span={OVERLAP_SPAN:g}s {parts} "
        f"failed={len(failures)} wall={time.monotonic() - began:.1f}s",
    )
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------------- on_crash


def crash_specs(first: datetime) -> list[dict[str, Any]]:
    end = first + timedelta(seconds=CRASH_SPAN)
    specs = []
    for i in range(CRASH_JOBS):
        # Spread over the interval, so that runs are in flight at any moment.
        start = first + timedelta(seconds=CRASH_EVERY * i / CRASH_JOBS)
        common = {
            "func": hold,
            "trigger": "interval",
            "seconds": CRASH_EVERY,
            "kwargs": {"seconds": CRASH_RUN},
            "start_date": start,
            "end_date": end,
            "coalesce": False,
        }
        specs.append({**common, "id": f"rerun-{i}", "on_crash": "rerun"})
        specs.append(
            {
                **common,
                "id": f"abandon-{i}",
                "on_crash": "abandon",
                # Would rerun abandoned runs; on_crash="abandon" overrides it.
                "retry": Retry(attempts=3, abandoned=True, backoff=0.2),
            }
        )
    return specs


async def test_on_crash(
    store: str,
    server: RedisServer | PostgresServer | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    began = time.monotonic()
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    place = make_place(server, tmp_path, lease=LEASE)
    await prepare(place)
    with fleet(place, tmp_path, PROCESSES) as workers:
        await workers.wait_ready()
        first = first_fire_time(LEAD, even=False)
        schedule, _ = await add_jobs(place, crash_specs(first))
        last = max(t for times in schedule.values() for t in times)
        span = (last - first).total_seconds()
        kill_at = sorted(
            first + timedelta(seconds=span * (k + 0.5) / CRASH_KILLS + rng.uniform(-0.3, 0.3))
            for k in range(CRASH_KILLS)
        )
        for when in kill_at:
            await sleep_until(when)
            workers.check_alive()
            slot = rng.randrange(PROCESSES)
            workers.kill(slot)
            await anyio.sleep(rng.uniform(0.2, 0.8))
            workers.start(slot)
        await workers.wait_ready()
        settled = await settle(place, workers, list(schedule), last)
        await workers.stop()
    history = await read_history(place, list(schedule), f"(seed={seed})")
    kill_times = workers.kill_times()
    executions = read_job_log(workers.job_logs(), kill_times)
    # Attempts in all: on_crash="rerun" without a retry policy runs an abandoned fire
    # time up to 3 times; "abandon" once, whatever its retry policy says.
    attempts = {job_id: RERUN_ATTEMPTS if job_id.startswith("rerun") else 1 for job_id in schedule}
    tally = count(schedule, attempts, history, executions)

    rerun_records = [r for job_id, rs in history.items() if job_id.startswith("rerun") for r in rs]
    abandon_records = [
        r for job_id, rs in history.items() if job_id.startswith("abandon") for r in rs
    ]
    abandoned = Counter(
        job_id.split("-")[0]
        for job_id, rs in history.items()
        for r in rs
        if r.outcome is RunOutcome.ABANDONED
    )
    rerun_attempts = Counter(r.attempt for r in rerun_records)
    gave_up = sum(
        1
        for r in rerun_records
        if r.outcome is RunOutcome.ABANDONED and r.attempt == RERUN_ATTEMPTS
    )
    reruns_seen = [e for e in executions if e.job_id.startswith("rerun") and e.attempt > 1]
    killed_mid_run = sum(
        1 for e in executions if e.ok is None and e.pid in kill_times and e.ended is not None
    )
    report(
        capsys,
        f"faults[{store}] on_crash: processes={PROCESSES} kills={len(kill_times)} "
        f"jobs={len(schedule)} {figures(tally)} killed_mid_run={killed_mid_run} "
        f"rerun:abandoned={abandoned['rerun']}/attempts="
        f"{'+'.join(f'{a}:{n}' for a, n in sorted(rerun_attempts.items()))}"
        f"/gave_up={gave_up}/reruns_executed={len(reruns_seen)} "
        f"abandon:abandoned={abandoned['abandon']}/reruns="
        f"{sum(1 for r in abandon_records if r.attempt > 1)} "
        f"settle={settled:.1f}s wall={time.monotonic() - began:.1f}s seed={seed}",
    )
    # Every fire time one final outcome; every abandoned run of a rerun job below 3
    # attempts was rerun (tally.unretried), none of an abandon job was.
    check(tally)
    assert abandoned["rerun"] > 0, "the kills landed on runs of the rerun jobs"
    assert abandoned["abandon"] > 0, "the kills landed on runs of the abandon jobs"
    # on_crash="abandon" wins over Retry(abandoned=True): never a second attempt.
    assert {r.attempt for r in abandon_records} == {1}
    assert not [e for e in executions if e.job_id.startswith("abandon") and e.attempt > 1]
    # Each abandoned rerun-job run below 3 attempts has its next attempt, for the same
    # fire time; every attempt of a fire time saw one key, the fire time's.
    runs = keyed(rerun_records)
    for record in rerun_records:
        if record.outcome is RunOutcome.ABANDONED and record.attempt < RERUN_ATTEMPTS:
            assert runs.get((record.scheduled_time, record.attempt + 1)), (
                f"{record.job_id} {record.scheduled_time}: attempt {record.attempt} "
                "abandoned and not rerun"
            )
    for execution in executions:
        expected = Run(job_id=execution.job_id, scheduled_time=execution.scheduled_time).key
        assert execution.key == str(expected), (
            f"{execution.job_id} {execution.scheduled_time} attempt {execution.attempt}: "
            f"current_run().key {execution.key}, not {expected}"
        )
    # The reruns ran, and knew they were reruns.
    assert reruns_seen, "no rerun saw current_run().attempt > 1"


# ----------------------------------------------------------------------- fencing


async def _wait_for(what: str, timeout: float, workers: Fleet, found: Any) -> Any:
    """Poll ``found()`` until it returns something true; that value."""
    try:
        with anyio.fail_after(timeout):
            while not (value := found()):
                workers.check_alive()
                await anyio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"{what} did not come within {timeout} s")
    return value


def _starts(workers: Fleet, job_id: str) -> list[Execution]:
    return [e for e in read_job_log(workers.job_logs(), {}) if e.job_id == job_id]


async def test_fencing(
    store: str,
    server: RedisServer | PostgresServer | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stalled process cannot start a fire time again nor overwrite a run's record.

    1. Job leases: the first process to release a run of ``fence-gone`` stops itself
       (SIGSTOP, see worker.py) right before its release reaches the store, holding the
       leases of ``fence-gone`` and ``fence-kept`` (same fire times, one batch). The
       leases (2 s) expire, another process acquires both jobs and runs those fire
       times; it also plans the rest of ``fence-gone``'s fire times (it ends then) and
       removes it, while ``fence-kept`` has one more. The test then sends SIGCONT: the
       stalled release must be refused for both jobs (an older fencing token; a job
       gone) and start nothing.
    2. Run lease: the process executing ``fence-run`` (one fire time, 2.5 s long,
       ``on_crash="rerun"``) is stopped just after its start; another process takes the
       run over (``abandoned``) and reruns it (attempt 2). After SIGCONT the stalled run
       ends ``success`` and its process calls finish_run: the record taken over stays.

    The first stall is at a known point (before a store call, not in one); the second
    comes from outside, at any point of the process: should it stop the process in the
    middle of a SQLite write transaction or of a PostgreSQL transaction holding the run's
    row (one store call of a few ms, every 2/3 s, while nothing else happens), the others
    would wait for it and the takeover would not come; the test would fail on that wait
    ("fence-run's rerun did not come"), not pass.

    The first phase needs one process to acquire both lease jobs in one batch. Two
    processes acquiring at the same instant may split them (each takes one): then the
    scenario is run again, on a new place, up to ``FENCE_TRIES`` times.
    """
    for attempt in range(FENCE_TRIES):
        place_dir = tmp_path / f"try-{attempt}"
        place_dir.mkdir()
        if await _fencing_once(store, server, place_dir, capsys):
            return
    pytest.fail(f"the lease jobs were acquired in two batches, {FENCE_TRIES} times")


FENCE_TRIES = 3


async def _fencing_once(
    store: str,
    server: RedisServer | PostgresServer | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> bool:
    """One run of test_fencing; ``False`` if the lease jobs were acquired in two batches
    (nothing checked then)."""
    began = time.monotonic()
    marker = tmp_path / "stall.json"
    place = make_place(server, tmp_path, lease=FENCE_LEASE)
    await prepare(place)
    stall_args = ["--stall-release", "fence-gone", "--stall-marker", str(marker)]
    lease_jobs = ["fence-gone", "fence-kept"]
    job_ids = [*lease_jobs, "fence-run"]
    with fleet(place, tmp_path, PROCESSES, stall_args) as workers:
        await workers.wait_ready()
        first = first_fire_time(LEAD, even=False)
        # After the lease jobs' last fire time, on another grid: phase 2 meets no other
        # store traffic of theirs.
        run_at = first + timedelta(seconds=3.5)
        every = {
            "func": hold,
            "trigger": "interval",
            "seconds": 1,
            "kwargs": {"seconds": 0.2},
            "start_date": first,
            "coalesce": False,
        }
        specs = [
            {**every, "id": "fence-gone", "end_date": first + timedelta(seconds=2)},
            {**every, "id": "fence-kept", "end_date": first + timedelta(seconds=3)},
            {
                "func": hold,
                "trigger": "date",
                "run_date": run_at,
                "id": "fence-run",
                "kwargs": {"seconds": 2.5},
                "on_crash": "rerun",
            },
        ]
        await add_jobs(place, specs)

        # --- 1. stalled holding the job leases
        def stalled_worker() -> Any:
            if not marker.exists():
                return None
            stall = json.loads(marker.read_text())
            worker = workers.current[workers.slot_of(stall["pid"])]
            return (stall, worker) if worker.stopped() else None

        stall, lease_worker = await _wait_for("a stalled release", 15, workers, stalled_worker)
        stalled_at = time.monotonic()
        if sorted(stall["releases"]) != lease_jobs:
            return False  # split between two processes: the scenario is not there
        stalled_fire = {
            job_id: datetime.fromisoformat(stall["releases"][job_id]["started"][0])
            for job_id in lease_jobs
        }

        def taken_over() -> bool:
            done = {
                e.job_id
                for e in read_job_log(workers.job_logs(), {})
                if e.job_id in stalled_fire
                and e.scheduled_time == stalled_fire[e.job_id]
                and e.pid != lease_worker.pid
            }
            return len(done) == len(lease_jobs)

        await _wait_for("the stalled fire times run elsewhere", 15, workers, taken_over)
        lease_stall = time.monotonic() - stalled_at
        await anyio.sleep(0.3)
        workers.resume(lease_worker.slot)

        def after_wake() -> list[dict[str, Any]]:
            return [
                line
                for line in lease_worker.trace_lines()
                if line["call"] == "release_jobs" and line["after_stall"]
            ]

        (release_after,) = await _wait_for("the late release", 15, workers, after_wake)

        # --- 2. stalled executing a run
        def run_started() -> list[Execution]:
            return [e for e in _starts(workers, "fence-run") if e.attempt == 1]

        (stalled_run,) = await _wait_for("fence-run's start", 20, workers, run_started)
        run_worker = workers.pause(workers.slot_of(stalled_run.pid))
        paused_at = time.monotonic()

        def rerun_started() -> list[Execution]:
            return [e for e in _starts(workers, "fence-run") if e.attempt == 2]

        (rerun,) = await _wait_for("fence-run's rerun", 20, workers, rerun_started)
        run_stall = time.monotonic() - paused_at
        workers.resume(run_worker.slot)

        def late_finish() -> list[dict[str, Any]]:
            return [
                line
                for line in run_worker.trace_lines()
                if line["call"] == "finish_run" and line["run_id"] == stalled_run.run_id
            ]

        (finish_after,) = await _wait_for("the late finish_run", 15, workers, late_finish)
        settled = await settle(place, workers, job_ids, run_at)
        await workers.stop()
    history = await read_history(place, job_ids)
    executions = read_job_log(workers.job_logs(), {})
    # What the stalled processes logged after waking (worker.py logs warnings).
    refused_logged = lease_worker.output.read_text().count("refused this scheduler's release")
    late_logged = run_worker.output.read_text().count("after another scheduler took it over")

    records = {str(run.id): run for runs in history.values() for run in runs}
    stalled_record = records.get(stalled_run.run_id)
    held = {
        job_id: [r for r in history[job_id] if r.scheduled_time == stalled_fire[job_id]]
        for job_id in lease_jobs
    }
    stalled_runs = {job_id: set(stall["releases"][job_id]["run_ids"]) for job_id in lease_jobs}
    restarted = {
        job_id: sorted(ids & (set(records) | {e.run_id for e in executions}))
        for job_id, ids in stalled_runs.items()
    }
    report(
        capsys,
        f"faults[{store}] fencing: processes={PROCESSES} lease={FENCE_LEASE:g}s "
        f"lease_stall={lease_stall:.1f}s "
        f"tokens={','.join(str(stall['releases'][j]['token']) for j in lease_jobs)} "
        f"release_after_wake=rejected:{','.join(release_after['rejected']) or '-'} "
        f"stalled_fire_time_records={','.join(str(len(held[j])) for j in lease_jobs)} "
        f"started_after_wake={','.join(str(len(restarted[j])) for j in lease_jobs)} "
        f"run_stall={run_stall:.1f}s late_finish={finish_after['outcome']}->"
        f"kept:{stalled_record.outcome if stalled_record else None} "
        f"fence_run_records={len(history['fence-run'])} "
        f"warnings=refused:{refused_logged}/ended_after_takeover:{late_logged} "
        f"settle={settled:.1f}s wall={time.monotonic() - began:.1f}s",
    )
    # 1. The release of the stalled process was refused and started nothing, for the
    # job whose lease was taken over and for the job the taker removed meanwhile; each
    # fire time it held ran once, elsewhere, under a newer lease.
    assert "fence-kept" in release_after["rejected"], "a release with an old token accepted"
    assert "fence-gone" in release_after["rejected"], (
        "the store accepted the release of a lease that had expired and been taken over, "
        "because the taker's release removed the job (its trigger had ended) meanwhile: "
        f"the stalled process started {stalled_fire['fence-gone']} again"
    )
    for job_id in lease_jobs:
        assert not restarted[job_id], f"{job_id}: the stalled release started its runs"
        (record,) = held[job_id]
        assert record.scheduler_id != stall["scheduler_id"]
        assert record.outcome is RunOutcome.SUCCESS
    # No fire time was started twice: one record per fire time and attempt, one
    # execution per fire time and attempt.
    for job_id, runs in history.items():
        assert all(len(rs) == 1 for rs in keyed(runs).values()), f"{job_id}: a record twice"
    started = Counter((e.job_id, e.scheduled_time, e.attempt) for e in executions)
    assert max(started.values()) == 1, f"started twice: {started.most_common(3)}"
    # 2. The run taken over keeps the record of the takeover; its late end (a success,
    # from the process that ran it) did not overwrite it, nor start anything.
    assert stalled_record is not None
    assert stalled_record.outcome is RunOutcome.ABANDONED
    assert stalled_record.scheduler_id == run_worker.ready.read_text(encoding="utf-8")
    assert finish_after["outcome"] == "success"
    (late,) = [e for e in executions if e.run_id == stalled_run.run_id]
    assert late.ok is True  # it did end, late
    (second,) = [r for r in history["fence-run"] if r.attempt == 2]
    assert str(second.id) == rerun.run_id
    assert second.outcome is RunOutcome.SUCCESS
    assert rerun.pid != run_worker.pid
    assert len(history["fence-run"]) == 2
    return True


# ---------------------------------------------------------------------- max_runs


async def test_max_runs(
    store: str,
    server: RedisServer | PostgresServer | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every 0.3 s, max_runs=5, three processes: 5 runs in all, then the job is gone.

    ``max-N`` runs for 50 ms (one at a time); ``max-all-N`` for 1 s with
    ``overlap="allow_all"``, so that its runs go on in several processes at once and the
    count of started runs must be the store's, shared.

    The count is shared only if the runs spread over processes; which process acquires
    a fire time is up to the schedulers' timing, so a run that happens to give every job
    to one process is done again (each run checks the counts all the same), up to
    ``MAX_RUNS_TRIES`` times.
    """
    for attempt in range(MAX_RUNS_TRIES):
        place_dir = tmp_path / f"try-{attempt}"
        place_dir.mkdir()
        pids = await _max_runs_once(store, server, place_dir, capsys)
        if max(pids.values()) >= 2:
            break
    else:
        # Else the store's count of started runs was never shared (see QUICK_SQLITE_POLL).
        pytest.fail(f"every job ran in one process only, {MAX_RUNS_TRIES} times")


MAX_RUNS_TRIES = 3


async def _max_runs_once(
    store: str,
    server: RedisServer | PostgresServer | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, int]:
    """One run of test_max_runs; returns how many processes ran each job."""
    began = time.monotonic()
    place = make_place(server, tmp_path, lease=LEASE, sqlite_poll=QUICK_SQLITE_POLL)
    await prepare(place)
    with fleet(place, tmp_path, PROCESSES) as workers:
        await workers.wait_ready()
        first = first_fire_time(LEAD, even=False)
        common = {"func": hold, "trigger": "interval", "seconds": QUICK_EVERY, "max_runs": MAX_RUNS}
        specs = [
            *({**common, "id": f"max-{i}", "kwargs": {"seconds": 0.05}} for i in range(3)),
            *(
                {**common, "id": f"max-all-{i}", "kwargs": {"seconds": 1.0}, "overlap": "allow_all"}
                for i in range(3)
            ),
        ]
        for spec in specs:
            spec["start_date"] = first
        job_ids = [spec["id"] for spec in specs]
        await add_endless(place, specs)
        last = first + timedelta(seconds=QUICK_EVERY * (MAX_RUNS - 1))
        settled = await settle(place, workers, job_ids, last, timeout=20)
        # Nothing more comes: the jobs are gone.
        await anyio.sleep(2 * QUICK_EVERY)
        await workers.stop()
    history = await read_history(place, job_ids)
    executions = by_job(read_job_log(workers.job_logs(), {}))
    started = {
        job_id: [r for r in runs if r.started_at is not None] for job_id, runs in history.items()
    }
    pids = {job_id: len({e.pid for e in executions.get(job_id, [])}) for job_id in job_ids}
    overlapping = {
        job_id: most_at_once((e.started, e.ended) for e in runs if e.ended is not None)
        for job_id, runs in executions.items()
    }
    report(
        capsys,
        f"faults[{store}] max_runs: processes={PROCESSES} jobs={len(job_ids)} "
        f"max_runs={MAX_RUNS} every={QUICK_EVERY:g}s "
        f"started={','.join(str(len(started[j])) for j in job_ids)} "
        f"executed={','.join(str(len(executions.get(j, []))) for j in job_ids)} "
        f"processes_used={','.join(str(pids[j]) for j in job_ids)} "
        f"most_at_once={','.join(str(overlapping.get(j, 0)) for j in job_ids)} "
        f"settle={settled:.1f}s wall={time.monotonic() - began:.1f}s",
    )
    for job_id in job_ids:
        # read_history checked that no job is left.
        assert len(started[job_id]) == MAX_RUNS, f"{job_id}: {len(started[job_id])} runs"
        assert len(executions.get(job_id, [])) == MAX_RUNS, job_id
        assert {r.outcome for r in started[job_id]} == {RunOutcome.SUCCESS}, job_id
        assert len({r.scheduled_time for r in started[job_id]}) == MAX_RUNS, job_id
    # The allow_all jobs' runs overlapped: several were in flight when later ones started.
    assert max(overlapping.get(f"max-all-{i}", 0) for i in range(3)) >= 2
    return pids


# -------------------------------------------------------- pause_after_failures


async def test_pause_after_failures(
    store: str,
    server: RedisServer | PostgresServer | None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A job failing every 0.3 s with pause_after_failures=3 ends paused, with its note.

    The bound on failures is 3 + EXTRA_FAILURES (2), not 3: the pause is decided after
    the third failure is stored, by the process that ran it, with three more store calls
    (the run history, the job, the update). A fire time released meanwhile, by any
    process, still starts its run (a release that finds the job paused keeps it paused,
    but its runs were decided). With runs failing at once and fire times 0.3 s apart,
    that window holds at most one fire time unless the store takes longer than 0.3 s to
    answer; 2 leaves room for one slow answer on a loaded machine.
    """
    began = time.monotonic()
    place = make_place(server, tmp_path, lease=LEASE, sqlite_poll=QUICK_SQLITE_POLL)
    await prepare(place)
    job_ids = [f"fail-{i}" for i in range(3)]
    with fleet(place, tmp_path, PROCESSES) as workers:
        await workers.wait_ready()
        first = first_fire_time(LEAD, even=False)
        specs = [
            {
                "func": fail,
                "trigger": "interval",
                "seconds": QUICK_EVERY,
                "id": job_id,
                "start_date": first,
                "coalesce": False,
                "pause_after_failures": PAUSE_AFTER,
            }
            for job_id in job_ids
        ]
        await add_endless(place, specs)
        await sleep_until(first + timedelta(seconds=QUICK_EVERY * (PAUSE_AFTER - 1)))
        async with client(place) as scheduler:
            with anyio.fail_after(20):
                while any(job.next_run_time for job in await scheduler.get_jobs()):
                    workers.check_alive()
                    await anyio.sleep(0.1)
        paused_after = time.monotonic() - began
        # Paused: nothing more runs.
        await anyio.sleep(4 * QUICK_EVERY)
        jobs, history = await stop_and_read(place, workers, job_ids)
    executions = by_job(read_job_log(workers.job_logs(), {}))
    used = [len({e.pid for e in executions.get(job_id, [])}) for job_id in job_ids]
    failures = {
        job_id: [r for r in runs if r.outcome is RunOutcome.ERROR]
        for job_id, runs in history.items()
    }
    report(
        capsys,
        f"faults[{store}] pause_after_failures: processes={PROCESSES} jobs={len(job_ids)} "
        f"pause_after_failures={PAUSE_AFTER} every={QUICK_EVERY:g}s "
        f"failures={','.join(str(len(failures[j])) for j in job_ids)} "
        f"bound={PAUSE_AFTER}+{EXTRA_FAILURES} "
        f"processes_used={','.join(map(str, used))} "
        f"paused={sum(1 for j in job_ids if jobs[j].next_run_time is None)} "
        f"wall={time.monotonic() - began:.1f}s (paused after {paused_after:.1f}s)",
    )
    for job_id in job_ids:
        job = jobs[job_id]
        assert job.next_run_time is None, f"{job_id} is not paused"
        assert job.pause_note is not None
        assert job.pause_note.startswith(
            f"paused after {PAUSE_AFTER} failed fire times in a row "
            f"(pause_after_failures={PAUSE_AFTER}); last: error at "
        ), job.pause_note
        runs = sorted(history[job_id], key=lambda r: r.scheduled_time)
        assert all(r.outcome is RunOutcome.ERROR for r in runs), f"{job_id}: {runs}"
        assert PAUSE_AFTER <= len(runs) <= PAUSE_AFTER + EXTRA_FAILURES, (
            f"{job_id}: {len(runs)} failures"
        )
        assert len(executions.get(job_id, [])) == len(runs)
        assert all(len(rs) == 1 for rs in keyed(runs).values())
