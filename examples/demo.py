"""A few seconds of horae: interval, cron, one-off and failing jobs, and their events.

The jobs are kept in a SQLite file (the embedded persistent store), so they are
referenced by import path, never pickled. Run it with ``python3 -m nox -s demo`` (or
``python examples/demo.py`` where horae is installed). It exits by itself after about
six seconds.
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import datetime, timedelta

import anyio

from horae import (
    AsyncScheduler,
    Event,
    JobAdded,
    JobError,
    JobEvent,
    JobExecuted,
    JobMissed,
    JobSkipped,
    JobSubmitted,
    SQLiteStore,
    current_run,
)


async def heartbeat() -> str:
    """A coroutine job: runs in the scheduler's own event loop."""
    run = current_run()
    return f"beat for {run.scheduled_time:%H:%M:%S}"


def crunch(n: int) -> int:
    """A sync job: runs in a worker thread, so it never blocks the loop."""
    time.sleep(0.05)
    return sum(range(n))


async def flaky() -> None:
    """A job that fails: the scheduler reports it and goes on."""
    raise RuntimeError("the disk is full (not really)")


async def once(message: str) -> str:
    return message


def describe(event: Event) -> str:
    when = f"{event.timestamp:%H:%M:%S.%f}"[:-3]
    if isinstance(event, JobExecuted):
        return f"{when}  executed  {event.job_id:<10} -> {event.result!r}"
    if isinstance(event, JobError):
        last_line = event.traceback.strip().splitlines()[-1]
        return f"{when}  error     {event.job_id:<10} {last_line}"
    if isinstance(event, (JobMissed, JobSkipped)):
        return f"{when}  {type(event).__name__:<9} {event.job_id}"
    if isinstance(event, JobAdded):
        return f"{when}  added     {event.job_id}"
    if isinstance(event, JobEvent):
        return f"{when}  {type(event).__name__:<9} {event.job_id}"
    return f"{when}  {type(event).__name__}"


async def main(seconds: float = 6.0) -> None:
    with tempfile.TemporaryDirectory() as folder:
        await run_demo(f"{folder}/demo.db", seconds)


async def run_demo(path: str, seconds: float) -> None:
    print(f"jobs are kept in {path}")
    scheduler = AsyncScheduler(SQLiteStore(path))
    async with scheduler, scheduler.subscribe() as events, anyio.create_task_group() as tg:

        async def show() -> None:
            async for event in events:
                if not isinstance(event, JobSubmitted):
                    print(describe(event), flush=True)

        tg.start_soon(show)
        await scheduler.add_job(heartbeat, "interval", seconds=1, id="heartbeat")
        await scheduler.add_job(crunch, "cron", second="*/2", args=[1_000_000], id="crunch")
        await scheduler.add_job(flaky, "interval", seconds=3, id="flaky")
        await scheduler.add_job(
            once,
            "date",
            run_date=datetime.now().astimezone() + timedelta(seconds=2.5),
            args=["a one-off job, 2.5 s after the start"],
            id="once",
        )
        print(f"run_job returned {await scheduler.run_job(crunch, args=[10])}")
        await scheduler.print_jobs()
        await anyio.sleep(seconds)
        await scheduler.shutdown()
    print("demo finished: the scheduler stopped after its running jobs ended")


if __name__ == "__main__":
    # horae logs each failure with its traceback under the "horae" logger; the events
    # printed above already tell the story, so the demo keeps the log to one line each.
    logging.basicConfig(format="log: %(levelname)s %(name)s: %(message)s")

    def without_traceback(record: logging.LogRecord) -> bool:
        record.exc_info = record.exc_text = None
        return True

    logging.root.handlers[0].addFilter(without_traceback)
    anyio.run(main)
