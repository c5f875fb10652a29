"""The scheduler processes of a fault test: start, kill by pid, restart, stop.

Each slot holds one worker process at a time (``python -m tests.faults.worker``); a
killed one is replaced by a new process in the same slot, with a job log, an events file
and a scheduler id of its own. Every process started here is stopped by its pid when the
fleet is closed, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from . import jobs
from .servers import PostgresServer, RedisServer

ROOT = Path(__file__).resolve().parents[2]


@attrs.frozen
class Place:
    """Where the schedulers meet: the store kind, its target and the schema/prefix."""

    store: str  # sqlite, postgres, redis
    target: str  # the database file, the DSN or the URL
    place: str = "horae"  # the PostgreSQL schema or the Redis key prefix
    lease: float = 2.0
    sqlite_timeout: float = 5.0
    sqlite_poll: float = 1.0  # SQLiteStore(poll_interval=) of the workers

    def make_store(self) -> Any:
        from horae import PostgresStore, RedisStore, SQLiteStore

        from .worker import RUN_RETENTION

        if self.store == "sqlite":
            return SQLiteStore(self.target, run_retention=RUN_RETENTION)
        if self.store == "postgres":
            return PostgresStore(self.target, schema=self.place, run_retention=RUN_RETENTION)
        return RedisStore(self.target, prefix=self.place, run_retention=RUN_RETENTION)


@attrs.define
class Worker:
    slot: int
    generation: int
    process: subprocess.Popen[bytes]
    output: Path
    ready: Path
    events: Path
    job_log: Path
    trace: Path
    killed_at: float | None = None  # time.monotonic() of the SIGKILL

    @property
    def pid(self) -> int:
        return self.process.pid

    def output_tail(self) -> str:
        return self.output.read_text(encoding="utf-8", errors="replace")[-4000:]

    def trace_lines(self) -> list[dict[str, Any]]:
        """What ``--trace`` wrote (see worker.py)."""
        if not self.trace.exists():
            return []
        lines = self.trace.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    def stopped(self) -> bool:
        """Whether the process is stopped (SIGSTOP), from /proc (Linux)."""
        stat = Path(f"/proc/{self.pid}/stat")
        if not stat.exists():
            return False
        # The state follows the command name, which is in parentheses.
        return stat.read_text().rsplit(")", 1)[1].split()[0] in ("T", "t")

    def event_kinds(self) -> list[str]:
        if not self.events.exists():
            return []
        lines = self.events.read_text(encoding="utf-8").splitlines()
        return [json.loads(line)["kind"] for line in lines if line.endswith("}")]


class Fleet:
    """Scheduler processes, ``size`` at a time, all on one place."""

    def __init__(
        self, place: Place, directory: Path, size: int, worker_args: Sequence[str] = ()
    ) -> None:
        self.place = place
        self.directory = directory
        self.size = size
        self.worker_args = list(worker_args)
        self.current: dict[int, Worker] = {}
        self.every: list[Worker] = []

    def start(self, slot: int) -> Worker:
        generation = sum(1 for w in self.every if w.slot == slot)
        name = f"worker-{slot}-{generation}"
        output = self.directory / f"{name}.out"
        worker_paths = {
            "ready": self.directory / f"{name}.ready",
            "events": self.directory / f"{name}.events.jsonl",
            "job_log": self.directory / f"{name}.jobs.jsonl",
            "trace": self.directory / f"{name}.trace.jsonl",
        }
        place = self.place
        command = [
            sys.executable,
            "-m",
            "tests.faults.worker",
            "--store",
            place.store,
            "--target",
            place.target,
            "--place",
            place.place,
            "--lease",
            str(place.lease),
            "--sqlite-timeout",
            str(place.sqlite_timeout),
            "--sqlite-poll",
            str(place.sqlite_poll),
            "--ready",
            str(worker_paths["ready"]),
            "--events",
            str(worker_paths["events"]),
            *self.worker_args,
        ]
        if self.worker_args:
            command += ["--trace", str(worker_paths["trace"])]
        env = dict(os.environ, **{jobs.LOG_ENV: str(worker_paths["job_log"])})
        with output.open("wb") as out:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=ROOT, env=env,
            )  # fmt: skip
        worker = Worker(slot, generation, process, output, **worker_paths)
        self.current[slot] = worker
        self.every.append(worker)
        return worker

    def kill(self, slot: int) -> Worker:
        """SIGKILL the process in ``slot``; remember when, to end its unfinished runs."""
        worker = self.current.pop(slot)
        worker.killed_at = time.monotonic()
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait()
        return worker

    def pause(self, slot: int) -> Worker:
        """SIGSTOP the process in ``slot``: it stalls, holding what it holds."""
        worker = self.current[slot]
        worker.process.send_signal(signal.SIGSTOP)
        return worker

    def resume(self, slot: int) -> Worker:
        """SIGCONT the process in ``slot``."""
        worker = self.current[slot]
        worker.process.send_signal(signal.SIGCONT)
        return worker

    def slot_of(self, pid: int) -> int:
        (slot,) = [w.slot for w in self.current.values() if w.pid == pid]
        return slot

    def check_alive(self) -> None:
        for worker in self.current.values():
            code = worker.process.poll()
            if code is not None:
                pytest.fail(
                    f"worker {worker.slot} (pid {worker.pid}) exited with {code}:\n"
                    f"{worker.output_tail()}"
                )

    async def wait_ready(self, timeout: float = 60.0) -> None:
        with anyio.fail_after(timeout):
            while not all(w.ready.exists() for w in self.current.values()):
                self.check_alive()
                await anyio.sleep(0.05)

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM every current process; each shuts down waiting for its runs."""
        for worker in self.current.values():
            # A stalled process (SIGSTOP) would not act on SIGTERM until continued.
            worker.process.send_signal(signal.SIGCONT)
            worker.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(timeout):
            for worker in self.current.values():
                await anyio.to_thread.run_sync(worker.process.wait, abandon_on_cancel=True)
        for worker in self.current.values():
            assert worker.process.returncode == 0, (
                f"worker {worker.slot} (pid {worker.pid}) exited with "
                f"{worker.process.returncode}:\n{worker.output_tail()}"
            )

    def close(self) -> None:
        """Kill, by its pid, every process that is still running."""
        for worker in self.every:
            if worker.process.poll() is None:
                worker.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.process.wait(timeout=10)

    def job_logs(self) -> list[Path]:
        return [w.job_log for w in self.every]

    def kill_times(self) -> dict[int, float]:
        return {w.pid: w.killed_at for w in self.every if w.killed_at is not None}


@contextlib.contextmanager
def fleet(
    place: Place, directory: Path, size: int, worker_args: Sequence[str] = ()
) -> Iterator[Fleet]:
    """``size`` workers on ``place``; ``worker_args`` (with ``--trace`` added) for each."""
    processes = Fleet(place, directory, size, worker_args)
    try:
        for slot in range(size):
            processes.start(slot)
        yield processes
    finally:
        processes.close()


def make_place(
    server: RedisServer | PostgresServer | None, directory: Path, **options: float
) -> Place:
    """A fresh place for one test: a schema or a key prefix on ``server``, else a file."""
    name = f"faults_{uuid.uuid4().hex[:10]}"
    if isinstance(server, RedisServer):
        return Place("redis", server.url, name, **options)
    if isinstance(server, PostgresServer):
        return Place("postgres", server.dsn, name, **options)
    return Place("sqlite", str(directory / "jobs.db"), **options)
