"""One scheduler process of the multi-process exactly-once test (``test_multiprocess.py``).

Run from the repository root::

    python -m tests.stores.multiprocess_worker STORE PLACE SERVER --ready FILE

It starts an :class:`AsyncScheduler` (real clock, asyncio) on the store ``STORE``
(``sqlite``: PLACE is the database file; ``postgres``: the schema, SERVER the DSN;
``redis``: the key prefix, SERVER the URL), writes its scheduler id to the ready file, runs
jobs until SIGTERM (or SIGINT) comes or ``--max-seconds`` pass, then shuts down waiting
for its running jobs, and exits with status 0. The jobs record their runs in ``$HORAE_MP_RESULTS``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

import anyio

from horae import AsyncScheduler
from horae.stores.base import Store


def make_store(name: str, place: str, server: str) -> Store:
    if name == "sqlite":
        from horae.stores.sqlite import SQLiteStore

        return SQLiteStore(place)
    if name == "postgres":
        from horae.stores.postgres import PostgresStore

        return PostgresStore(server, schema=place)
    if name == "redis":
        from horae.stores.redis import RedisStore

        return RedisStore(server, prefix=place)
    raise SystemExit(f"store: {name!r} is not one of sqlite, postgres, redis")


async def serve(args: argparse.Namespace) -> None:
    store = make_store(args.store, args.place, args.server)
    # Listening before the ready file exists, so a stop request never meets the default
    # action of SIGTERM (dying with runs in flight).
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with AsyncScheduler(store) as scheduler:
            # Written whole, then renamed: the test never reads half an id.
            ready = anyio.Path(args.ready)
            await ready.with_suffix(".tmp").write_text(scheduler.id, encoding="utf-8")
            await ready.with_suffix(".tmp").replace(ready)
            with anyio.move_on_after(args.max_seconds):
                async for _ in signals:
                    break
            await scheduler.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("store", choices=["sqlite", "postgres", "redis"])
    parser.add_argument("place")
    parser.add_argument("server")
    parser.add_argument("--ready", required=True)
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING,
        format=f"%(asctime)s {os.getpid()} %(levelname)s %(name)s: %(message)s",
    )
    anyio.run(serve, args, backend="asyncio")


if __name__ == "__main__":
    main()
