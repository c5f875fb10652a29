"""One scheduler process of the fault suite.

Run from the repository root::

    python -m tests.faults.worker --store postgres --target DSN --place SCHEMA \
        --lease 2 --ready FILE --events FILE

It starts an :class:`AsyncScheduler` (real clock, asyncio) with the given lease duration
on the store (``sqlite``: TARGET is the database file; ``postgres``: the DSN and PLACE the
schema; ``redis``: the URL and PLACE the key prefix), writes its scheduler id to the ready
file, and runs jobs until SIGTERM (or SIGINT) comes, or ``--max-seconds`` pass (so that a
worker the suite lost track of does not live forever). Then it shuts down, waiting for its
runs, and exits with status 0. Its ``StoreFailed`` and ``StoreRecovered`` events go to the
events file, one JSON line each; its jobs write to ``$HORAE_FAULTS_LOG``.

For the fencing test, ``--trace FILE`` writes down (one JSON line each) the releases the
store refused and every ``finish_run``, with what the store was given; and with
``--stall-release JOB_ID --stall-marker FILE`` the first release in the fleet that starts
a run of that job (the one that creates the marker file, writing the batch's leases into
it) stops its own process with SIGSTOP right before it reaches the store: the process
stalls holding the leases of the batch, at a known point, until the suite sends SIGCONT.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Sequence
from datetime import datetime
from typing import IO, Any

import anyio

from horae import (
    EVENT_STORE_ERROR,
    EVENT_STORE_RECOVERED,
    AsyncScheduler,
    Event,
    PostgresStore,
    RedisStore,
    Run,
    SQLiteStore,
    StoreFailed,
)
from horae.stores.base import Release, Store

#: Every run's history is kept, so that the suite can count every fire time.
RUN_RETENTION = 100_000


def make_store(args: argparse.Namespace) -> Store:
    if args.store == "sqlite":
        return SQLiteStore(
            args.target,
            run_retention=RUN_RETENTION,
            timeout=args.sqlite_timeout,
            poll_interval=args.sqlite_poll,
        )
    if args.store == "postgres":
        return PostgresStore(args.target, schema=args.place, run_retention=RUN_RETENTION)
    return RedisStore(args.target, prefix=args.place, run_retention=RUN_RETENTION)


def _event_writer(file: IO[str]) -> object:
    def write(event: Event) -> None:
        kind = "failed" if isinstance(event, StoreFailed) else "recovered"
        line = {"kind": kind, "pid": os.getpid(), "mono": time.monotonic(), "event": repr(event)}
        file.write(json.dumps(line) + "\n")

    return write


def _claim(marker: str, line: dict[str, Any]) -> bool:
    """Create ``marker`` holding ``line`` unless it exists: once in the whole fleet."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(json.dumps(line))
    return True


def instrument(store: Store, args: argparse.Namespace, trace: IO[str]) -> None:
    """Trace refused releases and finish_run calls; stall once (see the module's doc)."""
    release_jobs = store.release_jobs
    finish_run = store.finish_run

    def write(**line: Any) -> None:
        trace.write(json.dumps({"pid": os.getpid(), "mono": time.monotonic(), **line}) + "\n")

    async def traced_release(scheduler_id: str, releases: Sequence[Release]) -> set[str]:
        stalled = False
        if any(r.lease.job_id == args.stall_release and r.started for r in releases):
            # The whole batch stalls: every job leased with this one.
            line = {
                "pid": os.getpid(),
                "scheduler_id": scheduler_id,
                "releases": {
                    r.lease.job_id: {
                        "token": r.lease.token,
                        "expires_at": r.lease.expires_at.isoformat(),
                        "started": [run.scheduled_time.isoformat() for run in r.started],
                        "run_ids": [str(run.id) for run in r.started],
                    }
                    for r in releases
                },
            }
            if _claim(args.stall_marker, line):
                write(call="stall", **line)
                os.kill(os.getpid(), signal.SIGSTOP)
                stalled = True
                write(call="woke")
        rejected = await release_jobs(scheduler_id, releases)
        if rejected or stalled:
            write(
                call="release_jobs",
                after_stall=stalled,
                rejected=sorted(rejected),
                tokens={r.lease.job_id: r.lease.token for r in releases},
            )
        return rejected

    async def traced_finish(
        run: Run,
        *,
        retry: Run | None = None,
        expires_at: datetime | None = None,
        remove_finished_job: bool = False,
    ) -> bool:
        removed = await finish_run(
            run, retry=retry, expires_at=expires_at, remove_finished_job=remove_finished_job
        )
        write(
            call="finish_run",
            run_id=str(run.id),
            job_id=run.job_id,
            scheduled_time=run.scheduled_time.isoformat(),
            attempt=run.attempt,
            outcome=str(run.outcome),
            retry=str(retry.id) if retry is not None else None,
        )
        return removed

    store.release_jobs = traced_release  # type: ignore[method-assign]
    store.finish_run = traced_finish  # type: ignore[method-assign]


async def serve(args: argparse.Namespace, events: IO[str], trace: IO[str] | None) -> None:
    store = make_store(args)
    if trace is not None:
        instrument(store, args, trace)
    # Listening before the ready file exists, so a stop request never meets the default
    # action of SIGTERM (dying with runs in flight).
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        scheduler = AsyncScheduler(store, lease_duration=args.lease, timezone="UTC")
        scheduler.add_listener(
            _event_writer(events),  # type: ignore[arg-type]
            EVENT_STORE_ERROR | EVENT_STORE_RECOVERED,
        )
        async with scheduler:
            # Written whole, then renamed: the suite never reads half an id.
            ready = anyio.Path(args.ready)
            await ready.with_suffix(".tmp").write_text(scheduler.id, encoding="utf-8")
            await ready.with_suffix(".tmp").replace(ready)
            with anyio.move_on_after(args.max_seconds):
                async for _ in signals:
                    break
            await scheduler.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", choices=["sqlite", "postgres", "redis"], required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--place", default="horae")
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--sqlite-timeout", type=float, default=5.0)
    parser.add_argument("--sqlite-poll", type=float, default=1.0)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--trace")
    parser.add_argument("--stall-release")
    parser.add_argument("--stall-marker")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    # Line-buffered: each event reaches the file at once.
    with contextlib.ExitStack() as files:
        events = files.enter_context(open(args.events, "a", buffering=1, encoding="utf-8"))
        trace = None
        if args.trace:
            trace = files.enter_context(open(args.trace, "a", buffering=1, encoding="utf-8"))
        anyio.run(serve, args, events, trace, backend="asyncio")


if __name__ == "__main__":
    main()
