"""What only the SQLite store has: its file format, several processes on one file, and
noticing other processes' changes without notifications."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import attrs
import pytest

from horae import JobArgumentError, JSONSerializer, Run, RunOutcome, StoreError
from horae.stores._codec import encode_job
from horae.stores._sqlite_schema import JOB_IDS, RUNS_IN_FLIGHT, latest_runs, us
from horae.stores.base import Release, StoreContext
from horae.stores.sqlite import SCHEMA_VERSION, SQLiteStore

from .conftest import context
from .helpers import at, make_job, scheduler_info

pytestmark = pytest.mark.anyio

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite"


@pytest.fixture
async def store(path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(path)
    await store.start(context())
    try:
        yield store
    finally:
        await store.stop()


def query(path: Path, sql: str, *params: object) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


async def test_file_is_in_wal_mode_with_a_schema_version(store: SQLiteStore, path: Path) -> None:
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    assert query(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]


async def test_due_query_uses_the_index(store: SQLiteStore, path: Path) -> None:
    plan = query(path, "EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE due <= 0 ORDER BY due LIMIT 5")
    assert "USING INDEX jobs_due" in " ".join(str(row[-1]) for row in plan)


async def test_claim_query_uses_the_partial_index_of_in_flight_runs(
    store: SQLiteStore, path: Path
) -> None:
    plan = query(
        path,
        "EXPLAIN QUERY PLAN SELECT id FROM runs WHERE lease_expires <= 0 "
        "ORDER BY lease_expires LIMIT 5",
    )
    assert "USING INDEX runs_lease" in " ".join(str(row[-1]) for row in plan)


def _plan(path: Path, sql: str, *params: object) -> str:
    return " ".join(str(row[-1]) for row in query(path, f"EXPLAIN QUERY PLAN {sql}", *params))


async def test_listings_walk_indexes_not_the_history(store: SQLiteStore, path: Path) -> None:
    # The ids alone, never the payloads; the runs in flight, not every run kept.
    assert "COVERING INDEX" in _plan(path, JOB_IDS)
    assert "USING INDEX runs_lease" in _plan(path, RUNS_IN_FLIGHT, 5)
    # Two lookups in runs_job per id asked for, and no walk of the table.
    plan = _plan(path, latest_runs(3), "a", "b", "c")
    assert plan.count("USING INDEX runs_job") + plan.count("USING COVERING INDEX runs_job") == 2
    assert "SCAN runs" not in plan


# The layout of version 1, as the first SQLiteStore wrote it (without the events table,
# which came later within version 1).
_VERSION_1 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE jobs (id TEXT PRIMARY KEY, next_run_time INTEGER, due INTEGER,
        payload TEXT NOT NULL, lease_holder TEXT, lease_expires INTEGER,
        lease_token INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX jobs_due ON jobs (due)",
    """CREATE TABLE runs (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, seq INTEGER,
        scheduled_time INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,
        outcome TEXT, result TEXT, error TEXT, scheduler_id TEXT NOT NULL,
        attempt INTEGER NOT NULL, coalesced INTEGER NOT NULL)""",
    "CREATE INDEX runs_job ON runs (job_id, seq)",
    "INSERT INTO meta VALUES ('schema_version', 1), ('changes', 7), ('lease_token', 3)",
)


async def test_a_version_1_file_is_upgraded_and_its_in_flight_runs_are_claimable(
    path: Path,
) -> None:
    in_flight = Run(job_id="a", scheduled_time=at(10), scheduler_id="old")
    done = Run(job_id="a", scheduled_time=at(0), scheduler_id="old", outcome=RunOutcome.SUCCESS)
    conn = sqlite3.connect(path)
    with conn:
        for statement in _VERSION_1:
            conn.execute(statement)
        for run, seq in ((in_flight, None), (done, 1)):
            conn.execute(
                "INSERT INTO runs VALUES (?, 'a', ?, 0, NULL, NULL, ?, NULL, NULL, 'old', 1, 0)",
                (str(run.id), seq, None if run.outcome is None else run.outcome.value),
            )
    conn.close()
    store = SQLiteStore(path)
    await store.start(context("new"))
    try:
        assert query(path, "SELECT key, value FROM meta ORDER BY key") == [
            ("changes", 7),
            ("lease_token", 3),
            ("schema_version", SCHEMA_VERSION),
        ]
        # Left by a scheduler that could not renew it: expired already, whatever the time.
        (claimed,) = await store.claim_expired_runs("new", at(-(10**6)), 10, lease_duration=30)
        assert (claimed.id, claimed.scheduler_id, claimed.outcome) == (in_flight.id, "old", None)
        await store.add_jobs([make_job("a", 10)], replace=False)
        (lease,) = await store.acquire_jobs("new", at(10), 10, lease_duration=30)
        assert lease.running == 1
        await store.broadcast([])  # the events table of later version 1 files exists too
    finally:
        await store.stop()
    plan = query(path, "EXPLAIN QUERY PLAN SELECT id FROM runs WHERE lease_expires <= 0")
    assert "USING INDEX runs_lease" in " ".join(str(row[-1]) for row in plan)
    assert query(path, "SELECT COUNT(*) FROM events") == [(0,)]
    # Opening the upgraded file again changes nothing.
    store = SQLiteStore(path)
    await store.start(context("new"))
    await store.stop()
    assert query(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]


# The layout of version 2, as SQLiteStore wrote it before jobs counted their runs.
_VERSION_2 = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    """CREATE TABLE jobs (id TEXT PRIMARY KEY, next_run_time INTEGER, due INTEGER,
        payload TEXT NOT NULL, lease_holder TEXT, lease_expires INTEGER,
        lease_token INTEGER NOT NULL DEFAULT 0)""",
    "CREATE INDEX jobs_due ON jobs (due)",
    """CREATE TABLE runs (id TEXT PRIMARY KEY, job_id TEXT NOT NULL, seq INTEGER,
        scheduled_time INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER,
        outcome TEXT, result TEXT, error TEXT, scheduler_id TEXT NOT NULL,
        attempt INTEGER NOT NULL, coalesced INTEGER NOT NULL, lease_holder TEXT,
        lease_expires INTEGER)""",
    "CREATE INDEX runs_job ON runs (job_id, seq)",
    "CREATE INDEX runs_lease ON runs (lease_expires) WHERE lease_expires IS NOT NULL",
    """CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, sender TEXT NOT NULL,
        created INTEGER NOT NULL, message TEXT NOT NULL)""",
    "INSERT INTO meta VALUES ('schema_version', 2), ('changes', 7), ('lease_token', 3)",
)


async def test_a_version_2_file_is_upgraded_and_keeps_its_jobs_and_runs(path: Path) -> None:
    in_flight = Run(job_id="a", scheduled_time=at(5), scheduler_id="old")
    done = Run(job_id="a", scheduled_time=at(0), scheduler_id="old", outcome=RunOutcome.SUCCESS)
    conn = sqlite3.connect(path)
    with conn:
        for statement in _VERSION_2:
            conn.execute(statement)
        for job in (make_job("a", 10), make_job("p", None)):
            next_run = None if job.next_run_time is None else us(job.next_run_time)
            conn.execute(
                "INSERT INTO jobs (id, next_run_time, due, payload) VALUES (?, ?, ?, ?)",
                (job.id, next_run, next_run, encode_job(job, JSONSerializer())),
            )
        conn.execute(
            "INSERT INTO runs VALUES (?, 'a', NULL, ?, NULL, NULL, NULL, NULL, NULL, 'old', 1, "
            "0, 'old', ?)",
            (str(in_flight.id), us(at(5)), us(at(1000))),
        )
        conn.execute(
            "INSERT INTO runs VALUES (?, 'a', 1, ?, NULL, NULL, 'success', NULL, NULL, 'old', 1, "
            "0, NULL, NULL)",
            (str(done.id), us(at(0))),
        )
    conn.close()
    store = SQLiteStore(path)
    await store.start(context("new"))
    try:
        assert query(path, "SELECT key, value FROM meta ORDER BY key") == [
            ("changes", 7),
            ("lease_token", 3),
            ("schema_version", SCHEMA_VERSION),
        ]
        assert [(job.id, job.next_run_time) for job in await store.get_jobs()] == [
            ("a", at(10)),
            ("p", None),
        ]
        assert [run.id for run in await store.get_runs("a")] == [in_flight.id, done.id]
        # Existing jobs count their runs from 0; the old in-flight run counts for holds.
        (lease,) = await store.acquire_jobs("new", at(10), 10, lease_duration=30)
        assert (lease.job_id, lease.token, lease.running, lease.run_count) == ("a", 4, 1, 0)
        started = Run(job_id="a", scheduled_time=at(10), scheduler_id="new")
        release = Release(
            lease=lease, next_run_time=at(20), started=[started], hold_while_running=2
        )
        assert await store.release_jobs("new", [release]) == set()
        assert await store.next_run_time() is None
        await store.finish_run(attrs.evolve(in_flight, outcome=RunOutcome.SUCCESS))
        (lease,) = await store.acquire_jobs("new", at(20), 10, lease_duration=30)
        assert (lease.job_id, lease.running, lease.run_count) == ("a", 1, 1)
    finally:
        await store.stop()
    assert query(path, "SELECT id, run_count FROM jobs ORDER BY id") == [("a", 1), ("p", 0)]
    # Opening the upgraded file again changes nothing.
    store = SQLiteStore(path)
    await store.start(context("new"))
    await store.stop()
    assert query(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(SCHEMA_VERSION,)]


# The layout of version 3 before the register of schedulers came (within version 3).
_VERSION_3 = (
    *_VERSION_2[:-1],
    "ALTER TABLE jobs ADD COLUMN run_count INTEGER NOT NULL DEFAULT 0",
    "INSERT INTO meta VALUES ('schema_version', 3), ('changes', 7), ('lease_token', 3)",
)


async def test_a_version_3_file_gains_the_register_without_an_upgrade(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        for statement in _VERSION_3:
            conn.execute(statement)
    conn.close()
    store = SQLiteStore(path)
    await store.start(context("new"))
    try:
        await store.add_jobs([make_job("a", 10)], replace=False)
        await store.acquire_jobs("new", at(10), 10, lease_duration=30)
        await store.heartbeat(scheduler_info("new", 5))
        (info,) = await store.get_schedulers(at(11))
        assert (info.id, info.job_leases) == ("new", 1)
    finally:
        await store.stop()
    # No upgrade step: the version stays 3, so a version 3 horae without the register
    # still opens the file (and never reads the table).
    assert query(path, "SELECT value FROM meta WHERE key = 'schema_version'") == [(3,)]
    assert query(path, "SELECT id FROM schedulers") == [("new",)]


async def test_the_register_is_no_news_to_the_pollers(store: SQLiteStore, path: Path) -> None:
    # What the pollers of other processes read: the change counter and the events.
    def seen() -> list[tuple[object, ...]]:
        return query(
            path,
            "SELECT (SELECT value FROM meta WHERE key = 'changes'), (SELECT COUNT(*) FROM events)",
        )

    before = seen()
    await store.heartbeat(scheduler_info("s1", 5))
    await store.heartbeat(scheduler_info("s2", 5))
    await store.heartbeat(scheduler_info("s1", 15))
    await store.remove_scheduler("s2")
    assert [info.id for info in await store.get_schedulers(at(16))] == ["s1"]
    assert seen() == before
    await store.add_jobs([make_job("a", 10)], replace=False)  # a change is counted
    assert seen() != before


async def test_stop_gives_back_the_job_leases_it_holds(path: Path) -> None:
    first = SQLiteStore(path)
    await first.start(context("s1"))
    second = SQLiteStore(path)
    await second.start(context("s2"))
    try:
        await first.add_jobs([make_job("mine", 10), make_job("theirs", 11)], replace=False)
        (mine,) = await first.acquire_jobs("s1", at(10), 1, lease_duration=60)
        (theirs,) = await second.acquire_jobs("s2", at(11), 1, lease_duration=60)
        assert (mine.job_id, theirs.job_id) == ("mine", "theirs")
        await first.stop()
        # Due again at once rather than at the lease's expiry (70), and only that one.
        assert await second.next_run_time() == at(10)
        (again,) = await second.acquire_jobs("s2", at(12), 10, lease_duration=60)
        assert again.job_id == "mine"
        assert again.token > mine.token
        # The stopped scheduler's late release no longer applies.
        await first.start(context("s1"))
        assert await first.release_jobs("s1", [Release(lease=mine, next_run_time=at(99))]) == {
            "mine"
        }
    finally:
        await first.stop()
        await second.stop()


async def test_a_retry_needs_the_end_of_its_lease(store: SQLiteStore) -> None:
    run = Run(job_id="a", scheduled_time=at(10), outcome=RunOutcome.ERROR)
    retry = Run(job_id="a", scheduled_time=at(10), attempt=2)
    with pytest.raises(ValueError, match="expires_at"):
        await store.finish_run(run, retry=retry)
    assert await store.get_runs("a") == []


async def test_a_newer_schema_is_refused(path: Path) -> None:
    store = SQLiteStore(path)
    await store.start(context())
    await store.stop()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(StoreError, match="schema version 99"):
        await SQLiteStore(path).start(context())


async def test_start_again_after_stop_keeps_the_jobs(path: Path) -> None:
    store = SQLiteStore(str(path))
    await store.start(context())
    await store.add_jobs([make_job("a", 10)], replace=False)
    await store.stop()
    await store.start(context())
    try:
        assert [job.id for job in await store.get_jobs()] == ["a"]
    finally:
        await store.stop()


async def test_unusable_arguments_and_states_are_explained(tmp_path: Path) -> None:
    with pytest.raises(JobArgumentError, match="run_retention"):
        SQLiteStore(tmp_path / "x.sqlite", run_retention=-1)
    with pytest.raises(JobArgumentError, match="path"):
        SQLiteStore(42)  # type: ignore[arg-type]
    with pytest.raises(JobArgumentError, match="timeout"):
        SQLiteStore(tmp_path / "x.sqlite", timeout=0)
    with pytest.raises(JobArgumentError, match="serializer"):
        SQLiteStore(tmp_path / "x.sqlite", serializer="json")  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="not started"):
        await SQLiteStore(tmp_path / "x.sqlite").get_jobs()
    with pytest.raises(StoreError, match="directory exists"):
        await SQLiteStore(tmp_path / "missing" / "x.sqlite").start(context())


async def test_memory_database_works_for_one_instance() -> None:
    store = SQLiteStore(":memory:")
    await store.start(context())
    try:
        await store.add_jobs([make_job("m", 1)], replace=False)
        (lease,) = await store.acquire_jobs("s", at(1), 10, 30)
        assert lease.job_id == "m"
    finally:
        await store.stop()


async def test_run_retention_keeps_the_newest(path: Path) -> None:
    store = SQLiteStore(path, run_retention=2)
    await store.start(context())
    try:
        for i in range(5):
            await store.finish_run(
                Run(job_id="h", scheduled_time=at(i), finished_at=at(i), outcome=RunOutcome.SUCCESS)
            )
        assert [r.scheduled_time for r in await store.get_runs("h")] == [at(4), at(3)]
        assert query(path, "SELECT COUNT(*) FROM runs") == [(2,)]
    finally:
        await store.stop()


async def test_expired_lease_of_a_job_paused_meanwhile_is_dropped(store: SQLiteStore) -> None:
    await store.add_jobs([make_job("p", 10)], replace=False)
    (lease,) = await store.acquire_jobs("s1", at(10), 10, lease_duration=5)
    assert lease.job is not None
    await store.update_job(attrs.evolve(lease.job, next_run_time=None))
    # Until the lease expires, its expiry is when someone must look at the job again.
    assert await store.next_run_time() == at(15)
    assert await store.acquire_jobs("s2", at(16), 10, lease_duration=5) == []
    assert await store.next_run_time() is None
    # The first holder's late release no longer applies.
    rejected = await store.release_jobs("s1", [Release(lease=lease, next_run_time=at(20))])
    assert rejected == {"p"}
    assert (await store.get_job("p")).next_run_time is None


async def test_another_instance_s_change_wakes_the_scheduler(path: Path) -> None:
    woken = anyio.Event()
    watcher = SQLiteStore(path, poll_interval=0.02)
    await watcher.start(StoreContext(scheduler_id="w", wakeup=woken.set, publish=lambda e: None))
    writer = SQLiteStore(path)
    await writer.start(context("writer"))
    try:
        # Its own writes are not news to it.
        await watcher.add_jobs([make_job("own", 10)], replace=False)
        await anyio.sleep(0.2)
        assert not woken.is_set()
        await writer.add_jobs([make_job("other", 5)], replace=False)
        with anyio.fail_after(5):
            await woken.wait()
    finally:
        await writer.stop()
        await watcher.stop()


_ACQUIRER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, timezone

    import anyio

    from horae.stores.base import StoreContext
    from horae.stores.sqlite import SQLiteStore


    async def main(path: str, name: str, what: str) -> None:
        store = SQLiteStore(path)
        await store.start(
            StoreContext(scheduler_id=name, wakeup=lambda: None, publish=lambda e: None)
        )
        print("ready", flush=True)
        sys.stdin.readline()
        now = datetime(2027, 1, 2, tzinfo=timezone.utc)
        if what == "jobs":
            while leases := await store.acquire_jobs(name, now, 7, 60):
                for lease in leases:
                    print(lease.job_id, lease.token, flush=True)
        else:
            while runs := await store.claim_expired_runs(name, now, 7, 60):
                for run in runs:
                    print(run.id, 0, flush=True)
        # Stopping gives the leases back: not before the others are done acquiring.
        print("done", flush=True)
        sys.stdin.readline()
        await store.stop()


    anyio.run(main, *sys.argv[1:])
    """
)


@pytest.fixture
def competitors(path: Path) -> Iterator[Callable[[str], list[subprocess.Popen[str]]]]:
    """Start three processes that will take jobs (or runs) from the file at once."""
    processes: list[subprocess.Popen[str]] = []

    def start(what: str) -> list[subprocess.Popen[str]]:
        processes.extend(
            subprocess.Popen(
                [sys.executable, "-c", _ACQUIRER, str(path), name, what],
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for name in ("p1", "p2", "p3")
        )
        return processes

    try:
        yield start
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait()


def _take_together(processes: list[subprocess.Popen[str]]) -> list[list[tuple[str, int]]]:
    for process in processes:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    results = []
    for process in processes:
        assert process.stdout is not None
        result = []
        while (line := process.stdout.readline()) not in ("done\n", ""):
            taken, token = line.split()
            result.append((taken, int(token)))
        results.append(result)
    for process in processes:
        process.communicate("stop\n", timeout=60)
        assert process.returncode == 0
    return results


async def test_processes_sharing_the_file_lease_disjoint_jobs(
    store: SQLiteStore, competitors: Callable[[str], list[subprocess.Popen[str]]]
) -> None:
    jobs = [make_job(f"j{i}", i) for i in range(1500)]
    await store.add_jobs(jobs, replace=False)
    results = await anyio.to_thread.run_sync(_take_together, competitors("jobs"))
    leased = [job_id for result in results for job_id, _ in result]
    tokens = [token for result in results for _, token in result]
    assert sorted(leased) == sorted(job.id for job in jobs)  # each job once, none lost
    assert len(set(tokens)) == len(tokens)
    # They really competed: every process got some of the jobs.
    assert all(results)


async def test_processes_sharing_the_file_claim_disjoint_runs(
    store: SQLiteStore, competitors: Callable[[str], list[subprocess.Popen[str]]]
) -> None:
    await store.add_jobs([make_job(f"j{i}", 10) for i in range(1500)], replace=False)
    leases = await store.acquire_jobs("dead", at(10), 1500, lease_duration=30)
    runs = [
        Run(job_id=lease.job_id, scheduled_time=at(10), scheduler_id="dead") for lease in leases
    ]
    releases = [
        Release(lease=lease, next_run_time=None, started=[run])
        for lease, run in zip(leases, runs, strict=True)
    ]
    assert await store.release_jobs("dead", releases) == set()
    results = await anyio.to_thread.run_sync(_take_together, competitors("runs"))
    claimed = [run_id for result in results for run_id, _ in result]
    assert sorted(claimed) == sorted(str(run.id) for run in runs)  # each run once
    assert all(results)


async def test_runs_finishing_together_are_all_recorded(store: SQLiteStore) -> None:
    runs = [
        Run(job_id="g", scheduled_time=at(i), finished_at=at(i), outcome=RunOutcome.SUCCESS)
        for i in range(50)
    ]
    async with anyio.create_task_group() as tg:
        for run in runs:
            tg.start_soon(store.finish_run, run)
    assert {r.id for r in await store.get_runs("g")} == {r.id for r in runs}


async def test_a_hold_racing_the_end_of_the_last_run_never_leaves_its_job_held(
    path: Path,
) -> None:
    # Two instances on one file: two connections, each in a worker thread of its own,
    # so the release that holds the job and the finish of the run that should free it
    # really run at the same time, and SQLite's write lock alone orders them. Whichever
    # goes first, the job must be due again once both are done.
    frees = [0]

    def woken() -> None:
        frees[0] += 1

    releaser = SQLiteStore(path)
    await releaser.start(context("r"))
    finisher = SQLiteStore(path, poll_interval=3600)
    # The finisher's scheduler is woken by a finish that frees the job (its poller is
    # idle and its own writes below never wake it): how often the finish came second.
    await finisher.start(StoreContext(scheduler_id="f", wakeup=woken, publish=lambda e: None))
    rounds = 200
    try:
        await releaser.add_jobs([make_job("a", 0)], replace=False)
        for i in range(rounds):
            t = 10 * i
            (lease,) = await releaser.acquire_jobs("r", at(t), 1, lease_duration=30)
            run = Run(job_id="a", scheduled_time=at(t), scheduler_id="r")
            await releaser.release_jobs(
                "r", [Release(lease=lease, next_run_time=at(t + 1), started=[run])]
            )
            (lease,) = await releaser.acquire_jobs("r", at(t + 1), 1, lease_duration=30)
            assert lease.running == 1
            # Every other round the release starts a run of its own (two slots then).
            extra = [Run(job_id="a", scheduled_time=at(t + 1), scheduler_id="r")][: i % 2]
            release = Release(
                lease=lease,
                next_run_time=at(t + 2),
                started=extra,
                hold_while_running=1 + len(extra),
            )
            ended = attrs.evolve(run, outcome=RunOutcome.SUCCESS, finished_at=at(t + 1))
            async with anyio.create_task_group() as tg:
                tg.start_soon(releaser.release_jobs, "r", [release])
                tg.start_soon(finisher.finish_run, ended)
            acquired = await finisher.acquire_jobs("f", at(t + 2), 10, lease_duration=5)
            assert [lease.job_id for lease in acquired] == ["a"], f"round {i}: left held"
            for other in extra:
                await finisher.finish_run(attrs.evolve(other, outcome=RunOutcome.SUCCESS))
            # Due after the lease's expiry: this release wakes nobody.
            await finisher.release_jobs("f", [Release(lease=acquired[0], next_run_time=at(t + 10))])
    finally:
        await finisher.stop()
        await releaser.stop()
    # Both orders happened: the hold was taken (then freed by the finish) and skipped.
    assert 0 < frees[0] < rounds, frees


async def test_job_ids_are_sorted_as_python_sorts_str(store: SQLiteStore) -> None:
    ids = ["b", "a b", "ab", "Z", "é", "e", "\uffff", "\U0001f600", "a", "a\x00b"]
    await store.add_jobs([make_job(job_id, 10) for job_id in ids], replace=False)
    assert await store.get_job_ids() == sorted(ids)


async def _start_runs(store: SQLiteStore, job_id: str, when: float, count: int) -> list[Run]:
    (lease,) = await store.acquire_jobs("s1", at(when), 1, lease_duration=30)
    assert lease.job_id == job_id
    runs = [Run(job_id=job_id, scheduled_time=at(when), scheduler_id="s1") for _ in range(count)]
    await store.release_jobs(
        "s1", [Release(lease=lease, next_run_time=at(when + 10), started=runs)]
    )
    return runs


async def test_latest_runs_of_more_ids_than_one_statement_binds(store: SQLiteStore) -> None:
    # 1,200 ids take three statements (500 each); the jobs with runs sit at the edges
    # of each, and some ids come twice.
    ids = [f"nope-{i:04d}" for i in range(1200)]
    places = {"p0": 0, "p499": 499, "p500": 500, "p1199": 1199}
    runs = {}
    for when, (job_id, place) in enumerate(places.items()):
        ids[place] = job_id
        await store.add_jobs([make_job(job_id, when)], replace=False)
        (runs[job_id],) = await _start_runs(store, job_id, when, 1)
    await store.finish_run(
        attrs.evolve(runs["p500"], outcome=RunOutcome.SUCCESS, finished_at=at(50))
    )
    latest = await store.get_latest_runs([*ids, "p0", "p1199"])
    assert {job_id: run.id for job_id, run in latest.items()} == {
        job_id: run.id for job_id, run in runs.items()
    }
    assert latest["p0"] == runs["p0"]  # as created
    assert latest["p500"].outcome is RunOutcome.SUCCESS


async def test_latest_of_runs_started_together_is_the_one_get_runs_lists_first(
    store: SQLiteStore,
) -> None:
    await store.add_jobs([make_job("a", 10)], replace=False)
    (early,) = await _start_runs(store, "a", 10, 1)
    together = await _start_runs(store, "a", 20, 3)
    # The same scheduled time: the first written wins, in both (as in the memory store).
    (first,) = await store.get_runs("a", limit=1)
    assert first == together[0]
    assert await store.get_latest_runs(["a"]) == {"a": together[0]}
    assert [r.id for r in await store.get_runs("a")] == [*(r.id for r in together), early.id]


async def test_listings_read_while_another_process_writes(path: Path) -> None:
    # Reads only: a write transaction held elsewhere neither blocks them (they would
    # fail after the 0.1 s busy timeout) nor shows them its uncommitted rows.
    store = SQLiteStore(path, timeout=0.1)
    await store.start(context())
    try:
        await store.add_jobs([make_job("a", 10)], replace=False)
        (run,) = await _start_runs(store, "a", 10, 1)
        writer = sqlite3.connect(path, isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")
            writer.execute("INSERT INTO jobs (id, payload) VALUES ('uncommitted', '{}')")
            writer.execute("UPDATE runs SET seq = 1, lease_holder = NULL, lease_expires = NULL")
            assert await store.get_job_ids() == ["a"]
            assert await store.get_runs_in_flight() == [run]
            assert await store.get_latest_runs(["a", "uncommitted"]) == {"a": run}
        finally:
            writer.execute("ROLLBACK")
            writer.close()
    finally:
        await store.stop()
