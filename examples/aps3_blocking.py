"""APScheduler 3's BlockingScheduler program with cron and interval jobs, ported to horae.

The APScheduler 3 original::

    from datetime import datetime

    from apscheduler.schedulers.blocking import BlockingScheduler

    def tick():
        print(f"tick {datetime.now():%H:%M:%S}")

    def report():
        print("report")

    scheduler = BlockingScheduler()
    scheduler.add_job(tick, "interval", seconds=1, next_run_time=datetime.now())
    scheduler.add_job(report, "cron", second="*/2")
    scheduler.add_job(report, "cron", day_of_week="mon-fri", hour=17, minute=30)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass

What changed: the class is ``Scheduler`` and ``run_forever()`` is the blocking
``start()``; it returns (rather than raising) on Ctrl+C or SIGTERM, after giving running
jobs ``grace`` seconds. The jobs and triggers are written as before.

Run it with ``python examples/aps3_blocking.py`` and stop it with Ctrl+C or
``kill <pid>``. With ``HORAE_EXAMPLE_SECONDS=3`` set it stops itself after 3 seconds
(the tests use that).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from horae import Scheduler


def tick() -> None:
    print(f"tick {datetime.now(timezone.utc):%H:%M:%S.%f}", flush=True)


def report() -> None:
    print(f"report {datetime.now(timezone.utc):%H:%M:%S.%f}", flush=True)


def main() -> None:
    scheduler = Scheduler()
    now = datetime.now(timezone.utc)
    scheduler.add_job(tick, "interval", seconds=1, id="tick", next_run_time=now)
    scheduler.add_job(report, "cron", second="*/2", id="report")
    scheduler.add_job(report, "cron", day_of_week="mon-fri", hour=17, minute=30, id="daily")
    seconds = os.environ.get("HORAE_EXAMPLE_SECONDS")
    if seconds:
        # A job may stop its own scheduler: the stop completes once the job returns.
        stop_at = now + timedelta(seconds=float(seconds))
        scheduler.add_job(scheduler.shutdown, "date", run_date=stop_at, id="stop")
    scheduler.run_forever(grace=5)  # returns after shutdown(), SIGTERM or Ctrl+C
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
