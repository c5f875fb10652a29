"""The blocking facade as a background scheduler (APScheduler 3's BackgroundScheduler).

A program with no event loop of its own (a script, a GUI's main loop, a CLI) starts the
scheduler in a background thread, goes on with its work, and shuts it down at the end.
Run it with ``python examples/background.py``; it exits after a few job runs.
"""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from horae import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, Event, JobError, JobExecuted, Scheduler


def heartbeat() -> str:
    """A sync job: runs in the scheduler's worker threads."""
    return f"alive at {datetime.now(timezone.utc):%H:%M:%S}"


def main(scheduler: Scheduler | None = None, *, runs: int = 3) -> list[str]:
    """Start the scheduler, wait in the main thread for ``runs`` results, shut it down."""
    scheduler = scheduler if scheduler is not None else Scheduler()
    results: list[str] = []
    enough = threading.Event()

    def on_event(event: Event) -> None:  # called in the scheduler's thread
        if isinstance(event, JobExecuted):
            results.append(f"{event.job_id}: {event.result}")
        elif isinstance(event, JobError):
            results.append(f"{event.job_id} failed: {event.exception!r}")
        if len(results) >= runs:
            enough.set()

    scheduler.add_listener(on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    scheduler.start()  # returns at once; the scheduler runs in its own thread
    try:
        scheduler.add_job(heartbeat, "interval", seconds=1, id="heartbeat")
        enough.wait()  # the main thread is free: here it just waits
    finally:
        scheduler.shutdown()  # waits for running jobs
    print("\n".join(results))
    return results


if __name__ == "__main__":
    main()
