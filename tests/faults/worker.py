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
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import time
from typing import IO

import anyio

from horae import (
    EVENT_STORE_ERROR,
    EVENT_STORE_RECOVERED,
    AsyncScheduler,
    Event,
    PostgresStore,
    RedisStore,
    SQLiteStore,
    StoreFailed,
)
from horae.stores.base import Store

#: Every run's history is kept, so that the suite can count every fire time.
RUN_RETENTION = 100_000


def make_store(args: argparse.Namespace) -> Store:
    if args.store == "sqlite":
        return SQLiteStore(args.target, run_retention=RUN_RETENTION, timeout=args.sqlite_timeout)
    if args.store == "postgres":
        return PostgresStore(args.target, schema=args.place, run_retention=RUN_RETENTION)
    return RedisStore(args.target, prefix=args.place, run_retention=RUN_RETENTION)


def _event_writer(file: IO[str]) -> object:
    def write(event: Event) -> None:
        kind = "failed" if isinstance(event, StoreFailed) else "recovered"
        line = {"kind": kind, "pid": os.getpid(), "mono": time.monotonic(), "event": repr(event)}
        file.write(json.dumps(line) + "\n")

    return write


async def serve(args: argparse.Namespace, events: IO[str]) -> None:
    store = make_store(args)
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
    parser.add_argument("--ready", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    # Line-buffered: each event reaches the file at once.
    with open(args.events, "a", buffering=1, encoding="utf-8") as events:
        anyio.run(serve, args, events, backend="asyncio")


if __name__ == "__main__":
    main()
