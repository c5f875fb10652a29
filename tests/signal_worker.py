"""A scheduler process for tests/test_signals.py: ``python -m tests.signal_worker DB MODE``.

MODE ``async`` runs ``AsyncScheduler.run_forever``, ``sync`` the blocking facade's; both
with one job that starts at once and does not end by itself, and a grace of 0.2 s.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone

import anyio

from horae import AsyncScheduler, Scheduler, SQLiteStore

JOBS = {
    "async": "tests.jobfuncs:announce_then_hang",
    "sync": "tests.jobfuncs:sync_announce_then_wait",
}


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    options = {
        "id": "stuck",
        "next_run_time": datetime.now(timezone.utc),
        "replace_existing": True,
    }
    if mode == "async":

        async def run() -> None:
            scheduler = AsyncScheduler(SQLiteStore(path), scheduler_id="signalled")
            await scheduler.add_job(JOBS[mode], "interval", hours=1, **options)
            await scheduler.run_forever(grace=0.2)

        anyio.run(run)
    else:
        scheduler = Scheduler(SQLiteStore(path), scheduler_id="signalled")
        scheduler.add_job(JOBS[mode], "interval", hours=1, **options)
        scheduler.run_forever(grace=0.2)
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
