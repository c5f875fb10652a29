"""Multi-process exactly-once: three scheduler processes share one store.

For each persistent store, three real OS processes (``multiprocess_worker.py``) each run an
:class:`AsyncScheduler` on the real clock against the same place (SQLite file, PostgreSQL
schema, Redis prefix). This process adds 500 jobs with several fire times each, lets the
workers run them, stops them, and counts from the results table the jobs wrote (one
append-only file per process, see ``multiprocess_jobs.py``):

- every (job, fire time) of the triggers ran exactly once: none twice, none lost;
- ``max_instances=1`` held across processes: no two runs of a job overlap in time; a few
  slow jobs (runs longer than their interval) have fire times ``skipped`` for it;
- every process ran some of the jobs: they really shared the work;
- the store's run history agrees with the results table.

Each store prints one line of figures and writes it to ``build/figures/multiprocess.txt``.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from anyio.abc import Process

from horae import AsyncScheduler, CronTrigger, IntervalTrigger, Job, RunOutcome
from horae.stores.base import Store

from ..services import POSTGRES_DSN, REDIS_URL
from . import multiprocess_jobs

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(sys.platform == "win32", reason="the workers stop on SIGTERM"),
]

ROOT = Path(__file__).resolve().parents[2]
FIGURES = ROOT / "build" / "figures" / "multiprocess.txt"
UTC = timezone.utc

PROCESSES = 3
INTERVAL_JOBS = 390  # every 2 s, 3 fire times each
CRON_JOBS = 100  # second="*/2", 3 fire times each
SLOW_JOBS = 10  # every 1 s, 5 fire times each, but each run takes 2.5 s
SLOW_RUN = 2.5
#: From the moment every worker is ready to the first fire time: room to add the jobs.
LEAD = timedelta(seconds=2)
#: How long after the last run should have ended the workers keep running, to catch
#: a fire time run twice late.
SETTLE = timedelta(seconds=1)
#: How late a run may be before the test stops waiting for it (it then counts as lost).
PATIENCE = timedelta(seconds=20)


@pytest.fixture
def anyio_backend() -> str:
    # The workers run asyncio, and RedisStore and asyncpg need it in this process too.
    return "asyncio"


@attrs.frozen
class Place:
    """Where the processes meet: the store kind, its place and its server."""

    store: str
    place: str
    server: str


def _place_of(name: str, store: Store) -> Place:
    if name == "sqlite":
        return Place(name, str(store.path), "")  # type: ignore[attr-defined]
    if name == "postgres":
        return Place(name, store.schema, POSTGRES_DSN)  # type: ignore[attr-defined]
    return Place(name, store._prefix, REDIS_URL)  # type: ignore[attr-defined]


@attrs.frozen
class Worker:
    process: Process
    log: Path
    ready: Path
    results: Path

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


@asynccontextmanager
async def workers(place: Place, directory: Path) -> AsyncIterator[list[Worker]]:
    """Start the scheduler processes; kill whichever is still running on the way out."""
    started: list[Worker] = []
    try:
        for index in range(PROCESSES):
            log = directory / f"worker-{index}.log"
            ready = directory / f"ready-{index}"
            results = directory / f"results-{index}.jsonl"
            env = dict(os.environ, **{multiprocess_jobs.RESULTS_ENV: str(results)})
            with log.open("wb") as log_file:
                process = await anyio.open_process(
                    [
                        sys.executable,
                        "-m",
                        "tests.stores.multiprocess_worker",
                        place.store,
                        place.place,
                        place.server,
                        "--ready",
                        str(ready),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    env=env,
                )
            started.append(Worker(process=process, log=log, ready=ready, results=results))
        yield started
    finally:
        # Normally each has exited when asked to (SIGTERM); whatever did not is killed by its
        # pid, so no scheduler outlives the test.
        with anyio.CancelScope(shield=True):
            for worker in started:
                if worker.process.returncode is None:
                    worker.process.kill()
                await worker.process.wait()
                await worker.process.aclose()


async def wait_ready(started: list[Worker]) -> list[str]:
    """The workers' scheduler ids, once every one of them has started its scheduler."""
    with anyio.fail_after(30):
        while not all(w.ready.exists() for w in started):
            for worker in started:
                if worker.process.returncode is not None:
                    pytest.fail(
                        f"worker pid {worker.process.pid} exited with {worker.process.returncode} "
                        f"before it was ready:\n{worker.log_text()}"
                    )
            await anyio.sleep(0.05)
    return [w.ready.read_text(encoding="utf-8") for w in started]


@attrs.frozen
class Record:
    job_id: str
    scheduled_time: datetime
    pid: int
    scheduler_id: str
    at: float  # wall clock, to measure lateness
    started: float  # monotonic, shared by the processes of one machine
    ended: float


def read_results(started: list[Worker]) -> list[Record]:
    records = []
    for worker in started:
        if not worker.results.exists():
            continue
        for line in worker.results.read_text(encoding="utf-8").splitlines():
            if not line.endswith("}"):
                continue  # a line still being written
            row = json.loads(line)
            row["scheduled_time"] = datetime.fromisoformat(row["scheduled_time"])
            records.append(Record(**row))
    return records


async def add_jobs(client: AsyncScheduler, first: datetime) -> dict[str, list[datetime]]:
    """Add the jobs, firing from ``first``; return each job's fire times, from its trigger."""
    jobs: list[Job] = []
    options: dict[str, Any] = {"coalesce": False, "max_instances": 1, "misfire_grace_time": None}
    record = multiprocess_jobs.record
    for i in range(INTERVAL_JOBS):
        # Spread over a second, so that not every job is due at the same instant.
        start = first + timedelta(milliseconds=50 * (i % 20))
        trigger = IntervalTrigger(
            seconds=2, start_date=start, end_date=start + timedelta(seconds=4), timezone="UTC"
        )
        jobs.append(await client.add_job(record, trigger, id=f"interval-{i:03}", **options))
    for i in range(CRON_JOBS):
        cron = CronTrigger(
            second="*/2", start_date=first, end_date=first + timedelta(seconds=4), timezone="UTC"
        )
        jobs.append(await client.add_job(record, cron, id=f"cron-{i:03}", **options))
    for i in range(SLOW_JOBS):
        # Each at instants of its own, so that each is acquired on its own, by whichever
        # process comes first: then the process running a slow job is often not the one
        # that finds it due again, and max_instances must be counted across processes.
        start = first + timedelta(milliseconds=70 * i)
        trigger = IntervalTrigger(
            seconds=1, start_date=start, end_date=start + timedelta(seconds=4), timezone="UTC"
        )
        jobs.append(
            await client.add_job(
                record, trigger, kwargs={"duration": SLOW_RUN}, id=f"slow-{i:02}", **options
            )
        )
    schedule: dict[str, list[datetime]] = {}
    for job in jobs:
        fire_times = []
        t = job.next_run_time
        while t is not None:
            fire_times.append(t)
            t = job.trigger.next(t)
        schedule[job.id] = fire_times
    return schedule


def count_overlaps(records: list[Record]) -> int:
    by_job: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_job[record.job_id].append(record)
    overlaps = 0
    for runs in by_job.values():
        runs.sort(key=lambda r: r.started)
        overlaps += sum(1 for a, b in itertools.pairwise(runs) if b.started < a.ended)
    return overlaps


def write_figures(name: str, line: str) -> None:
    FIGURES.parent.mkdir(parents=True, exist_ok=True)
    prefix = f"multiprocess[{name}]:"
    kept = []
    if FIGURES.exists():
        kept = [x for x in FIGURES.read_text().splitlines() if not x.startswith(prefix)]
    FIGURES.write_text("\n".join([*kept, line]) + "\n")


@pytest.mark.parametrize("name", ["sqlite", "postgres", "redis"])
async def test_three_processes_run_every_fire_time_exactly_once(name: str, tmp_path: Path) -> None:
    began = time.monotonic()
    target = importlib.import_module(f"tests.stores.target_{name}")
    async with target.target() as factory:
        store = factory()
        place = _place_of(name, store)
        # The client creates the tables before the workers start, so they do not race to.
        async with AsyncScheduler(store, role="client", timezone="UTC") as client:
            async with workers(place, tmp_path) as started:
                scheduler_ids = await wait_ready(started)
                adding = datetime.now(UTC)
                # An even second, so that the cron jobs' */2 fires on the interval jobs' grid.
                first = (adding + LEAD).replace(microsecond=0)
                first += timedelta(seconds=first.second % 2)
                schedule = await add_jobs(client, first)
                added = datetime.now(UTC)
                last = max(t for times in schedule.values() for t in times)
                due = {(job_id, t) for job_id, times in schedule.items() for t in times}
                slow_ids = {job_id for job_id in schedule if job_id.startswith("slow-")}
                fast_due = {pair for pair in due if pair[0] not in slow_ids}
                # Wait for the last runs (a slow one may start at the last fire time) and
                # a little more; wait longer while fast fire times are still missing.
                done_by = last + timedelta(seconds=SLOW_RUN) + SETTLE
                while True:
                    now = datetime.now(UTC)
                    if now >= done_by:
                        ran = {(r.job_id, r.scheduled_time) for r in read_results(started)}
                        if fast_due <= ran or now >= last + PATIENCE:
                            break
                    for worker in started:
                        if worker.process.returncode is not None:
                            pytest.fail(
                                f"worker pid {worker.process.pid} exited with "
                                f"{worker.process.returncode}:\n{worker.log_text()}"
                            )
                    await anyio.sleep(0.1)
                for worker in started:
                    worker.process.terminate()  # the worker shuts down, waiting for its runs
                with anyio.fail_after(20):
                    for worker in started:
                        await worker.process.wait()
                for worker in started:
                    assert worker.process.returncode == 0, worker.log_text()
                pids = [w.process.pid for w in started]
                logs = [w.log_text() for w in started]
            records = read_results(started)
            history = {job_id: await client.get_runs(job_id, limit=100) for job_id in schedule}
            left = await client.get_jobs()

    # --- the results table
    counts = Counter((r.job_id, r.scheduled_time) for r in records)
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    unexpected = sorted(pair for pair in counts if pair not in due)
    overlaps = count_overlaps(records)
    per_pid = Counter(r.pid for r in records)
    per_process = [per_pid[pid] for pid in pids]
    lateness = sorted(r.at - r.scheduled_time.timestamp() for r in records)

    # --- the store's run history
    history_pairs: Counter[tuple[str, datetime]] = Counter()
    outcomes: Counter[str] = Counter()
    history_mismatch = []
    skipped_pairs = set()
    cross_process_skips = 0
    for job_id, runs in history.items():
        succeeded = {}
        for run in runs:
            history_pairs[(job_id, run.scheduled_time)] += 1
            outcomes[str(run.outcome.value if run.outcome else "in flight")] += 1
            if run.outcome is RunOutcome.SKIPPED:
                skipped_pairs.add((job_id, run.scheduled_time))
            elif run.outcome is RunOutcome.SUCCESS:
                succeeded[run.scheduled_time] = run.scheduler_id
        recorded = {r.scheduled_time: r.scheduler_id for r in records if r.job_id == job_id}
        if succeeded != recorded:
            history_mismatch.append(job_id)
        for run in runs:
            if run.outcome is RunOutcome.SKIPPED:
                # Skipped by a process other than the one running the job then: the
                # max_instances count the store keeps was read across processes.
                running = [
                    r
                    for r in records
                    if r.job_id == job_id and r.scheduled_time < run.scheduled_time
                ]
                if running and max(running, key=lambda r: r.started).scheduler_id != (
                    run.scheduler_id
                ):
                    cross_process_skips += 1
    history_duplicated = sum(n - 1 for n in history_pairs.values() if n > 1)

    ran_pairs = set(counts)
    lost = sorted(due - ran_pairs - skipped_pairs)
    slow_ran = sum(n for (job_id, _), n in counts.items() if job_id in slow_ids)
    slow_skipped = sum(1 for job_id, _ in skipped_pairs if job_id in slow_ids)
    fast_skipped = sorted(pair for pair in skipped_pairs if pair[0] not in slow_ids)

    line = (
        f"multiprocess[{name}]: processes={PROCESSES} jobs={len(schedule)} "
        f"fire_times={len(due)} ran={len(records)} skipped={len(skipped_pairs)} "
        f"duplicated={duplicated} lost={len(lost)} overlaps={overlaps} "
        f"per_process={'/'.join(map(str, per_process))} "
        f"slow_jobs={len(slow_ids)} (fire_times={sum(len(schedule[j]) for j in slow_ids)} "
        f"ran={slow_ran} skipped={slow_skipped} skipped_by_another_process={cross_process_skips}) "
        f"history={'+'.join(f'{k}:{v}' for k, v in sorted(outcomes.items()))} "
        f"late_p50={lateness[len(lateness) // 2]:.3f}s late_max={lateness[-1]:.3f}s "
        f"add_500={(added - adding).total_seconds():.1f}s wall={time.monotonic() - began:.1f}s"
    )
    print(line)
    write_figures(name, line)

    assert len(due) == (INTERVAL_JOBS + CRON_JOBS) * 3 + SLOW_JOBS * 5, "the schedule changed"
    assert duplicated == 0, [pair for pair, n in counts.items() if n > 1][:10]
    assert not unexpected, unexpected[:10]
    assert not lost, lost[:10]
    assert overlaps == 0
    assert not fast_skipped, fast_skipped[:10]
    assert all(per_process), f"a process ran no job: {per_process}"
    assert slow_skipped > 0, "no slow job was ever held back by max_instances"
    # About two thirds of the skips are decided by a process other than the one running
    # the job; none at all would mean max_instances was never tested across processes.
    assert cross_process_skips > 0
    # The history has exactly one outcome per fire time, agreeing with the results table.
    assert history_duplicated == 0
    assert set(history_pairs) == due
    assert set(outcomes) <= {"success", "skipped"}, outcomes
    assert not history_mismatch, history_mismatch[:10]
    assert {r.scheduler_id for r in records} <= set(scheduler_ids)
    # Every trigger is exhausted, so every job is gone from the store.
    assert left == []
    assert not any("Traceback" in log for log in logs), "\n".join(logs)
