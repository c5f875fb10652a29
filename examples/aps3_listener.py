"""APScheduler 3's listener on executed and error events, ported to horae.

The APScheduler 3 original::

    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
    from apscheduler.schedulers.background import BackgroundScheduler

    counts = {"executed": 0, "error": 0}

    def listener(event):
        if event.exception:
            counts["error"] += 1
            print(f"{event.job_id} crashed: {event.exception!r}")
        else:
            counts["executed"] += 1
            print(f"{event.job_id} returned {event.retval!r}")

    scheduler = BackgroundScheduler()
    scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.add_job(add, "interval", seconds=0.3, args=[2, 3], id="add")
    scheduler.add_job(divide, "interval", seconds=0.3, args=[1, 0], id="divide")
    scheduler.start()
    ...
    scheduler.shutdown()

What changed: the mask and the codes are the same, but each event is an instance of
its own class. ``JobExecuted`` has ``result`` (``retval`` still works) and no
``exception`` attribute, so test ``event.code`` (or ``isinstance``) rather than
``event.exception``; ``JobError`` has ``exception`` and ``traceback``. The listener runs
in the scheduler's thread, so it hands what it saw to the main thread through a
``threading.Event``. Each failure is also logged with its traceback (logger
``horae.scheduler``; without logging configured, to stderr), as APScheduler 3 did.

Run it with ``python examples/aps3_listener.py``; it stops by itself once it has seen
three results and three errors (or after ``HORAE_EXAMPLE_SECONDS``, 10 by default).
"""

from __future__ import annotations

import os
import threading

from horae import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, Event, JobError, JobExecuted, Scheduler


def add(a: int, b: int) -> int:
    return a + b


def divide(a: int, b: int) -> float:
    return a / b  # b=0: raises ZeroDivisionError at every run


def main() -> None:
    counts = {"executed": 0, "error": 0}
    enough = threading.Event()

    def listener(event: Event) -> None:  # called in the scheduler's thread
        if event.code == EVENT_JOB_ERROR:
            assert isinstance(event, JobError)
            counts["error"] += 1
            print(f"{event.job_id} crashed: {event.exception!r}", flush=True)
        else:
            assert isinstance(event, JobExecuted)
            counts["executed"] += 1
            print(f"{event.job_id} returned {event.retval!r}", flush=True)
        if counts["executed"] >= 3 and counts["error"] >= 3:
            enough.set()

    scheduler = Scheduler()
    scheduler.add_listener(listener, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.add_job(add, "interval", seconds=0.3, args=[2, 3], id="add")
    scheduler.add_job(divide, "interval", seconds=0.3, args=[1, 0], id="divide")
    scheduler.start()
    try:
        enough.wait(float(os.environ.get("HORAE_EXAMPLE_SECONDS", "10")))
    finally:
        scheduler.shutdown()
    print(f"executed: {counts['executed']}, errors: {counts['error']}", flush=True)


if __name__ == "__main__":
    main()
