"""APScheduler 3's BackgroundScheduler on SQLite with a thread pool, ported to horae.

The APScheduler 3 original::

    import time

    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.background import BackgroundScheduler

    def fetch(source):
        return f"fetched {source}"

    scheduler = BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(url="sqlite:///jobs.sqlite")},
        executors={"default": ThreadPoolExecutor(20)},
        job_defaults={"coalesce": False, "max_instances": 3},
        timezone="UTC",
    )
    scheduler.add_job(fetch, "interval", seconds=1, args=["feed"], id="fetch",
                      replace_existing=True)
    scheduler.start()
    try:
        while True:
            time.sleep(1)   # the main thread does its own work
    except (KeyboardInterrupt, SystemExit):
        scheduler.shutdown()

What changed: one store is passed positionally (``SQLiteStore(path)``, no SQLAlchemy),
the thread pool is ``ThreadExecutor(max_workers=20)`` under the same ``"default"`` name,
and ``start()``/``shutdown()`` are as before. The store keeps the job as the reference
``"__main__:fetch"`` and its arguments as JSON, so only this script (or a process that
can import the same reference) can run it. Every run is kept in the store's history,
which the program prints at the end.

Run it with ``python examples/aps3_background.py`` (it creates ``jobs.sqlite`` in the
current directory) and stop it with Ctrl+C; with ``HORAE_EXAMPLE_SECONDS=3`` set it
stops itself after 3 seconds. Run it twice: ``replace_existing=True`` keeps one copy of
the job in the file.
"""

from __future__ import annotations

import os
import time

from horae import Scheduler, SQLiteStore, ThreadExecutor


def fetch(source: str) -> str:
    """A sync job: runs in one of the "default" executor's threads."""
    return f"fetched {source}"


def main() -> None:
    scheduler = Scheduler(
        SQLiteStore("jobs.sqlite"),
        executors={"default": ThreadExecutor(max_workers=20)},
        job_defaults={"coalesce": False, "max_instances": 3},
        timezone="UTC",
    )
    scheduler.add_job(
        fetch, "interval", seconds=1, args=["feed"], id="fetch", replace_existing=True
    )
    scheduler.start()  # returns at once; the scheduler runs in its own thread
    seconds = os.environ.get("HORAE_EXAMPLE_SECONDS")
    deadline = time.monotonic() + float(seconds) if seconds else float("inf")
    worked = 0
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)  # the main thread does its own work
            worked += 1
    except KeyboardInterrupt:
        pass
    finally:
        runs = scheduler.get_runs("fetch")  # newest first
        print(f"jobs in the store: {[job.id for job in scheduler.get_jobs()]}")
        scheduler.shutdown()  # waits for running jobs
    print(f"main thread worked {worked} times")
    for run in reversed(runs):
        print(f"run {run.scheduled_time:%H:%M:%S} {run.outcome.value} {run.result!r}")


if __name__ == "__main__":
    main()
