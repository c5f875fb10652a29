"""The ``horae`` command line, run as a subprocess (``python -m horae``).

Job management runs against SQLite, PostgreSQL and Redis (a schema or key prefix of its
own per test, removed afterwards); bad input must end in one line on stderr and exit
code 2; ``horae run`` is started, runs jobs, and stops with exit code 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.cli_jobs import SETUP_FILE_ENV
from tests.services import POSTGRES_DSN, REDIS_URL, unavailable

ROOT = Path(__file__).resolve().parent.parent


def horae(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m horae ARGS`` from the repository root (so ``tests.*`` imports)."""
    return subprocess.run(
        [sys.executable, "-m", "horae", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(*args: str) -> str:
    result = horae(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(*args: str) -> Any:
    return json.loads(ok(*args, "--json"))


def assert_usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    """Exit code 2 and exactly one line ``horae: error: ...`` naming the problem."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("horae: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert result.stdout == ""


# ------------------------------------------------------------------------ stores


def _drop_schema(schema: str) -> None:
    import asyncpg

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()

    asyncio.run(drop())


def _postgres_url() -> Iterator[str]:
    asyncpg = pytest.importorskip("asyncpg")

    async def check() -> None:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
        await conn.close()

    try:
        asyncio.run(check())
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        unavailable(f"PostgreSQL at {POSTGRES_DSN}", exc)
    schema = f"horae_cli_{uuid.uuid4().hex}"
    separator = "&" if "?" in POSTGRES_DSN else "?"
    try:
        yield f"{POSTGRES_DSN}{separator}schema={schema}"
    finally:
        _drop_schema(schema)


def _redis_url() -> Iterator[str]:
    redis = pytest.importorskip("redis")
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except Exception as exc:
        client.close()
        unavailable(f"Redis at {REDIS_URL}", exc)
    prefix = f"horae-cli-{uuid.uuid4().hex}"
    separator = "&" if "?" in REDIS_URL else "?"
    try:
        yield f"{REDIS_URL}{separator}prefix={prefix}"
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
    elif request.param == "postgres":
        yield from _postgres_url()
    else:
        yield from _redis_url()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


# ------------------------------------------------------------------- job management


def test_jobs_lifecycle(store_url: str, tmp_path: Path) -> None:
    out = str(tmp_path / "out.txt")
    store = ["--store", store_url]
    added = ok(
        "jobs", "add", *store, "tests.cli_jobs:touch", "interval", "hours=1", "--args", '["x"]'
    )
    assert "added job" in added
    ok("jobs", "add", *store, "tests.cli_jobs:touch", "cron", "hour=3", "day_of_week=mon-fri",
       "max_instances=2", "overlap=buffer_all", "max_runs=5", "--id", "tick", "--args",
       json.dumps([out]), "--kwargs", '{"text": "hi"}')  # fmt: skip

    table = ok("jobs", "list", *store).splitlines()
    assert table[0].split() == ["ID", "NAME", "TRIGGER", "NEXT", "RUN"]
    tick_line = next(line for line in table if line.startswith("tick "))
    assert "at 03:00 on Monday through Friday" in tick_line
    assert "(in " in tick_line  # a relative time
    # Aligned: every row's NAME column starts where the header's does.
    name_column = table[0].index("NAME")
    assert all(line[name_column - 2 : name_column] == "  " for line in table[1:])

    jobs = {job["id"]: job for job in as_json("jobs", "list", *store)}
    assert len(jobs) == 2
    tick = jobs["tick"]
    assert tick["func"] == "tests.cli_jobs:touch"
    assert tick["args"] == [out]
    assert tick["kwargs"] == {"text": "hi"}
    assert tick["max_instances"] == 2
    assert (tick["overlap"], tick["max_runs"], tick["pause_note"]) == ("buffer_all", 5, None)
    assert tick["trigger_data"]["hour"] == "3"
    assert tick["paused"] is False

    shown = ok("jobs", "show", *store, "tick")
    assert "func:" in shown
    assert "tests.cli_jobs:touch" in shown

    assert "paused job 'tick'" in ok("jobs", "pause", *store, "tick", "--note", "disk full")
    assert as_json("jobs", "show", *store, "tick")["paused"] is True
    assert "pause note:    disk full" in ok("jobs", "show", *store, "tick")
    assert "paused" in ok("jobs", "list", *store)
    assert "resumed job 'tick'" in ok("jobs", "resume", *store, "tick")
    assert as_json("jobs", "show", *store, "tick")["paused"] is False

    before = datetime.now(timezone.utc)
    ok("jobs", "run-now", *store, "tick")
    due = datetime.fromisoformat(as_json("jobs", "show", *store, "tick")["next_run_time"])
    assert before - timedelta(seconds=1) <= due <= datetime.now(timezone.utc)

    assert as_json("runs", *store, "tick") == []
    assert "no runs yet" in ok("runs", *store, "tick")

    assert "removed job 'tick'" in ok("jobs", "remove", *store, "tick")
    assert [job["id"] for job in as_json("jobs", "list", *store)] != ["tick"]
    assert_usage_error(horae("jobs", "show", *store, "tick"), "no job with id 'tick'")
    assert_usage_error(horae("runs", *store, "tick"), "no job with id 'tick'")


_SCRIPT_ADDING_ITS_OWN_FUNCTION = """
import sys

import anyio

from horae import AsyncScheduler
from horae.cli import open_store


def tick() -> None:
    pass


async def main() -> None:
    async with AsyncScheduler(open_store(sys.argv[1]), role="client") as scheduler:
        await scheduler.add_job(tick, "interval", minutes=5, id="tick")


anyio.run(main)
"""


def test_jobs_list_names_the_jobs_that_cannot_be_read_here(store_url: str, tmp_path: Path) -> None:
    """A job added from a script with a function of its own (``__main__:tick``) is stored,
    but cannot be read back by the CLI: ``jobs list`` says so instead of hiding it."""
    script = tmp_path / "add_tick.py"
    script.write_text(_SCRIPT_ADDING_ITS_OWN_FUNCTION)
    added = subprocess.run(
        [sys.executable, str(script), store_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    store = ["--store", store_url]

    listed_alone = horae("jobs", "list", *store)
    assert listed_alone.returncode == 0, listed_alone.stderr
    # Said once, in the listing, not also as a log line of the store.
    assert "cannot be read" not in listed_alone.stderr
    alone = listed_alone.stdout
    assert "No jobs." not in alone
    assert alone.startswith("1 job cannot be read here:\n")
    line = next(line for line in alone.splitlines() if line.startswith("  tick "))
    assert "its callable cannot be imported: '__main__:tick'" in line
    assert "has no attribute 'tick'" in line
    assert "horae jobs remove ID" in alone
    assert "(__main__:...) imports only in that script's process" in alone

    ok("jobs", "add", *store, "tests.cli_jobs:touch", "interval", "hours=1", "--id", "fine",
       "--args", '["x"]')  # fmt: skip
    table = ok("jobs", "list", *store)
    assert table.splitlines()[0].split() == ["ID", "NAME", "TRIGGER", "NEXT", "RUN"]
    assert table.splitlines()[1].startswith("fine ")
    assert "\n\n1 job cannot be read here:\n  tick " in table

    listed = {job["id"]: job for job in as_json("jobs", "list", *store)}
    assert set(listed) == {"fine", "tick"}
    fine, tick = listed["fine"], listed["tick"]
    assert fine["error"] is None
    assert fine["func"] == "tests.cli_jobs:touch"
    # The same keys, so that scripts can read every entry alike; null where unknown.
    assert list(tick) == list(fine)
    assert tick["error"].startswith("its callable cannot be imported: '__main__:tick'")
    assert (tick["func"], tick["paused"], tick["next_run_time"]) == (None, None, None)

    # Its history and its removal need no reading of the job.
    assert "job 'tick' has no runs yet" in ok("runs", *store, "tick")
    assert_usage_error(horae("jobs", "show", *store, "tick"), "'tick' cannot be read back")
    assert "removed job 'tick'" in ok("jobs", "remove", *store, "tick")
    assert "cannot be read" not in ok("jobs", "list", *store)
    assert [job["id"] for job in as_json("jobs", "list", *store)] == ["fine"]


def test_replace_and_conflicting_id(sqlite_url: str) -> None:
    add = ["jobs", "add", "--store", sqlite_url, "tests.cli_jobs:touch", "interval", "--id", "t"]
    ok(*add, "seconds=30", "--args", '["x"]')
    assert_usage_error(horae(*add, "seconds=60", "--args", '["x"]'), "'t' exists already")
    ok(*add, "minutes=2", "--args", '["x"]', "--replace")
    [job] = as_json("jobs", "list", "--store", sqlite_url)
    assert job["trigger"].startswith("every 2 minutes")


def test_store_from_environment(sqlite_url: str) -> None:
    result = horae("jobs", "list", "--json", env={"HORAE_STORE": sqlite_url})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["jobs", "list", "--store", "mongodb://db/x"], ["unknown scheme 'mongodb'"]),
        (["jobs", "list", "--store", "jobs.db"], ["not a store URL"]),
        (["jobs", "list", "--store", "sqlite://"], ["names no file"]),
        (["cron", "*/5 9-17 * * fry"], ["day_of_week", "'fry'"]),
        (["cron", "61 * * * *"], ["minute", "'61'", "0..59"]),
        (["cron", "* * *"], ["3 fields", "expected 5"]),
        (["cron", "0 9 * * *", "--tz", "Mars/Base"], ["Mars/Base"]),
        (["run", "--store", "memory://", "--import", "no_such_module_x"], ["no_such_module_x"]),
        (["jobs"], ["give a verb"]),
        (["nonsense"], ["invalid choice"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], fragments: list[str]) -> None:
    result = horae(*args)
    assert_usage_error(result, *fragments)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["interval", "seconds=5", "--args", "[1,"], ["--args", "not JSON"]),
        (["interval", "seconds=5", "--args", '{"a": 1}'], ["--args", "not a JSON list"]),
        (["interval", "seconds"], ["'seconds' is not a key=value"]),
        (["interval", "fortnights=2"], ["fortnights"]),
        (["cron", "hour=25"], ["hour", "25"]),
        (["hourly", "x=1"], ["hourly"]),
    ],
)
def test_bad_job_definitions(sqlite_url: str, extra: list[str], fragments: list[str]) -> None:
    result = horae("jobs", "add", "--store", sqlite_url, "tests.cli_jobs:touch", *extra)
    assert_usage_error(result, *fragments)
    assert as_json("jobs", "list", "--store", sqlite_url) == []


def test_unimportable_callable(sqlite_url: str) -> None:
    result = horae("jobs", "add", "--store", sqlite_url, "tests.nowhere:f", "interval", "seconds=5")
    assert_usage_error(result, "tests.nowhere")


def test_unreachable_store_is_exit_1() -> None:
    result = horae("jobs", "list", "--store", "redis://127.0.0.1:1/0")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("horae: error: ")
    assert "Traceback" not in result.stderr


# -------------------------------------------------------------------------- explain


def _make_history(url: str) -> None:
    """Job "report" (every 2 min, misfire_grace_time=30) on a fake clock that starts 9 min
    ago: its first fire time succeeded, the next two were missed (coalesced into one
    record), then it was paused; the real clock has passed one more fire time since."""
    import anyio

    from horae import AsyncScheduler
    from horae.cli import open_store
    from horae.testing import FakeClock, wait_idle

    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=9)

    async def build() -> None:
        clock = FakeClock(start)
        async with AsyncScheduler(open_store(url), clock=clock, scheduler_id="s1") as scheduler:
            await scheduler.add_job(
                "tests.jobfuncs:async_add", "interval", minutes=2, args=[1], id="report",
                misfire_grace_time=30,
            )  # fmt: skip
            clock.advance(120)
            await wait_idle(scheduler)
            clock.advance(300)  # the fire times of +4 and +6 min are looked at at +7
            await wait_idle(scheduler)
            await scheduler.pause_job("report", note="until the vendor fixes their API")

    anyio.run(build, backend="asyncio")


def test_explain(store_url: str) -> None:
    _make_history(store_url)
    store = ["--store", store_url]
    text = ok("explain", *store, "report")
    lines = text.splitlines()
    assert lines[0] == "job 'report': paused"
    assert lines[1].startswith("  paused: until the vendor fixes their API.")
    assert "Last 4 fire times, newest first:" in text
    assert "could not start within misfire_grace_time=30 s; it was looked at 1 min after" in (
        text.replace("\n      ", " ")
    )
    data = as_json("explain", *store, "report")
    assert data["state"] == "paused"
    assert data["job"]["pause_note"] == "until the vendor fixes their API"
    assert [entry["status"] for entry in data["fire_times"]] == [
        "no record",
        "missed",
        "coalesced",
        "success",
    ]
    assert data["fire_times"][1]["attempts"] == 1
    assert "no record: the job is paused" in data["fire_times"][0]["reason"]
    assert len(as_json("explain", *store, "report", "--limit", "2")["fire_times"]) == 2


def test_explain_bad_input(sqlite_url: str) -> None:
    ok("jobs", "add", "--store", sqlite_url, "tests.cli_jobs:touch", "interval", "hours=1",
       "--id", "t", "--args", '["x"]')  # fmt: skip
    assert_usage_error(horae("explain", "--store", sqlite_url, "nope"), "no job with id 'nope'")
    assert_usage_error(horae("explain", "--store", sqlite_url, "t", "-n", "0"), "--limit: 0")
    out = ok("explain", "--store", sqlite_url, "t")
    assert out.startswith("job 't': scheduled\n  next fire time ")
    assert "No fire time to show: the job has no run on record." in out


# ----------------------------------------------------------------------------- cron


def test_cron_lists_next_fire_times() -> None:
    data = as_json(
        "cron", "30 9 * * mon-fri", "--tz", "Europe/Paris", "-n", "3",
        "--after", "2027-03-26T12:00:00+01:00",
    )  # fmt: skip
    assert data["timezone"] == "Europe/Paris"
    assert "Monday through Friday" in data["description"]
    # Friday the 26th, then the Monday after the spring-forward Sunday (CEST).
    assert data["next"] == [
        "2027-03-29T09:30:00+02:00",
        "2027-03-30T09:30:00+02:00",
        "2027-03-31T09:30:00+02:00",
    ]
    text = ok("cron", "*/15 * * * *", "--tz", "UTC", "-n", "2").splitlines()
    assert text[0] == "*/15 * * * *"
    assert "every 15 minutes" in text[1]
    rows = [line for line in text if line[:2] in ("1.", "2.")]
    assert len(rows) == 2
    assert all("(in " in row and "UTC" in row for row in rows)


def test_cron_dst_choices() -> None:
    args = ["cron", "30 2 * * *", "--tz", "America/New_York", "-n", "2"]
    after = ["--after", "2026-03-07T12:00:00-05:00"]
    assert as_json(*args, *after)["next"] == [
        "2026-03-08T03:30:00-04:00",
        "2026-03-09T02:30:00-04:00",
    ]
    skipping = as_json(*args, *after, "--dst-gap", "skip")
    assert skipping["next"] == ["2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]
    assert "skipping wall times missing" in skipping["description"]
    both = as_json(
        "cron", "30 1 * * *", "--tz", "Europe/London", "-n", "2", "--dst-repeated", "both",
        "--after", "2026-10-25T00:00:00+01:00",
    )  # fmt: skip
    assert both["next"] == ["2026-10-25T01:30:00+01:00", "2026-10-25T01:30:00+00:00"]


def test_cron_never_again() -> None:
    out = ok("cron", "0 0 30 2 *", "--tz", "UTC")
    assert "never fires" in out


# ------------------------------------------------------------------------------ run


def _wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        if process.poll() is not None:
            pytest.fail(f"horae run exited early ({process.returncode}): {process.stderr.read()}")  # type: ignore[union-attr]
        time.sleep(0.05)
    pytest.fail(f"{path} did not appear within {timeout} s")


def test_run_process_runs_jobs_and_stops_on_sigterm(store_url: str, tmp_path: Path) -> None:
    from_setup = tmp_path / "setup.txt"
    from_cli = tmp_path / "cli.txt"
    ok("jobs", "add", "--store", store_url, "tests.cli_jobs:touch", "interval", "hours=1",
       "--id", "later", "--args", json.dumps([str(from_cli)]))  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "horae", "run", "--store", store_url, "--import", "tests.cli_jobs",
         "--grace", "5", "--log-level", "info"],
        cwd=ROOT,
        env={**os.environ, SETUP_FILE_ENV: str(from_setup)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert _wait_for(from_setup, process) == "setup\n"
        assert not from_cli.exists()
        ok("jobs", "run-now", "--store", store_url, "later")
        assert _wait_for(from_cli, process) == "ran\n"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr
    assert "SIGTERM received" in stderr
    assert "Traceback" not in stderr
    assert stdout == ""
    # The interval job is back on its schedule, and its run is on record.
    later = as_json("jobs", "show", "--store", store_url, "later")
    assert datetime.fromisoformat(later["next_run_time"]) > datetime.now(timezone.utc)
    runs = as_json("runs", "--store", store_url, "later")
    assert [run["outcome"] for run in runs] == ["success"]
    assert runs[0]["result"] == "ran"
    assert "success" in ok("runs", "--store", store_url, "later")


# ----------------------------------------------------------------------- schedulers


def test_schedulers_lists_the_register(store_url: str) -> None:
    """A running scheduler is listed alive; a record no longer renewed, silent."""
    import socket

    import anyio

    from horae import AsyncScheduler, SchedulerInfo
    from horae.cli import open_store

    empty = ok("schedulers", "--store", store_url)
    assert empty.startswith("No scheduler is registered on this store")
    assert as_json("schedulers", "--store", store_url) == []
    now = datetime.now(timezone.utc)
    stale = SchedulerInfo(
        id="gone-1",
        host="old-host.example",
        pid=99,
        started_at=now - timedelta(hours=2),
        heartbeat_at=now - timedelta(minutes=10),
        expires_at=now - timedelta(minutes=10) + timedelta(seconds=30),
        version="0.0.1",
    )

    async def check() -> tuple[str, Any, Any]:
        async with AsyncScheduler(open_store(store_url), scheduler_id="worker-1") as scheduler:
            await scheduler.store.heartbeat(stale)
            text = await anyio.to_thread.run_sync(ok, "schedulers", "--store", store_url)
            data = await anyio.to_thread.run_sync(as_json, "schedulers", "--store", store_url)
        after = await anyio.to_thread.run_sync(as_json, "schedulers", "--store", store_url)
        return text, data, after

    text, data, after = anyio.run(check, backend="asyncio")
    lines = text.splitlines()
    assert lines[0].split() == [
        "ID", "HOST", "PID", "STATE", "STARTED", "LAST", "HEARTBEAT", "ALIVE", "JOB",
        "LEASES", "RUNS", "VERSION",
    ]  # fmt: skip
    worker = next(line for line in lines if line.startswith("worker-1 "))
    assert f" {socket.gethostname()} " in worker
    assert f" {os.getpid()} " in worker
    assert " running " in worker
    assert " alive " in worker
    gone = next(line for line in lines if line.startswith("gone-1 "))
    assert "old-host.example" in gone
    assert "10 min ago" in gone
    assert "silent for 10 min" in gone
    assert gone.rstrip().endswith("0.0.1")

    by_id = {item["id"]: item for item in data}
    assert set(by_id) == {"worker-1", "gone-1"}
    assert by_id["worker-1"]["alive"] is True
    assert by_id["worker-1"]["silent_for"] is None
    assert by_id["worker-1"]["pid"] == os.getpid()
    assert (by_id["worker-1"]["job_leases"], by_id["worker-1"]["run_leases"]) == (0, 0)
    assert by_id["gone-1"]["alive"] is False
    assert 600 <= by_id["gone-1"]["silent_for"] < 660
    assert datetime.fromisoformat(by_id["gone-1"]["heartbeat_at"]) == stale.heartbeat_at
    # The worker removed its record as it stopped; the dead one's stays (for a day).
    assert [item["id"] for item in after] == ["gone-1"]


def test_job_changes_reach_other_schedulers_naming_the_cli_user(store_url: str) -> None:
    """The CLI shares its events: a scheduler on the store sees the job added and paused,
    and who did it."""
    import getpass
    import socket

    import anyio

    from horae import AsyncScheduler, JobAdded, JobModified
    from horae.cli import open_store

    actor = f"cli {getpass.getuser()}@{socket.gethostname()}"

    async def watch() -> list[tuple[str, str, str]]:
        seen: list[tuple[str, str, str]] = []
        store = open_store(store_url)
        async with (
            AsyncScheduler(store, role="client") as watcher,
            watcher.subscribe(JobAdded, JobModified) as events,
        ):
            await anyio.to_thread.run_sync(
                ok, "jobs", "add", "--store", store_url, "tests.cli_jobs:touch", "interval",
                "hours=1", "--id", "shared", "--args", '["x"]',
            )  # fmt: skip
            await anyio.to_thread.run_sync(ok, "jobs", "pause", "--store", store_url, "shared")
            with anyio.fail_after(20):
                async for event in events:
                    seen.append((type(event).__name__, event.job_id, event.actor))
                    if len(seen) == 2:
                        break
        return seen

    assert anyio.run(watch, backend="asyncio") == [
        ("JobAdded", "shared", actor),
        ("JobModified", "shared", actor),
    ]
    assert_usage_error(
        horae("jobs", "add", "--store", store_url, "tests.cli_jobs:touch", "interval",
              "hours=1", "actor=mallory"),
        "actor=...",
    )  # fmt: skip
