"""The blocking facade as the whole program (APScheduler 3's BlockingScheduler).

``run_forever()`` blocks until Ctrl+C or SIGTERM, then stops gracefully: no new runs,
running jobs get ``grace`` seconds to finish, the rest are cancelled. That is what a
container or systemd sends, so this is a worker process as deployed. Run it with
``python examples/blocking.py`` and stop it with Ctrl+C (or ``kill <pid>``).
"""

from __future__ import annotations

from datetime import datetime, timezone

from horae import Scheduler


def tick() -> None:
    print(f"tick {datetime.now(timezone.utc):%H:%M:%S.%f}", flush=True)


def main() -> None:
    scheduler = Scheduler()
    scheduler.add_job(
        tick, "interval", seconds=1, id="tick", next_run_time=datetime.now(timezone.utc)
    )
    scheduler.run_forever(grace=5)  # returns after SIGTERM or Ctrl+C, jobs finished
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
