"""horae in a Flask app (a sync WSGI app, one or several worker processes).

Each worker process starts one blocking-facade scheduler on a shared persistent store;
leases hand every due fire time to exactly one of them, however many workers there are.
Run it (``pip install flask`` next to horae)::

    flask --app examples/flask_app run                         # one process
    gunicorn -w 4 --chdir examples 'flask_app:create_app()'    # four, one store

or ``python examples/flask_app.py``. ``HORAE_DB`` names the SQLite file (``jobs.db``).
Then ``curl -X POST localhost:5000/reports/ops`` and ``curl localhost:5000/reports/ops``.
"""

from __future__ import annotations

import atexit
import os
from datetime import datetime, timezone
from typing import Any

from flask import Flask

from horae import Scheduler, SQLiteStore


def send_report(team: str) -> str:
    """The job, at module level: the store keeps it as ``flask_app:send_report``."""
    return f"report for {team} at {datetime.now(timezone.utc):%H:%M:%S}"


def create_app(db_path: str | None = None) -> Flask:
    app = Flask(__name__)
    # One scheduler per process, started when the process builds its app (with gunicorn,
    # do not --preload: a scheduler thread does not survive a fork).
    scheduler = Scheduler(SQLiteStore(db_path or os.environ.get("HORAE_DB", "jobs.db")))
    scheduler.start()
    atexit.register(scheduler.shutdown)
    app.extensions["horae"] = scheduler

    @app.post("/reports/<team>")
    def schedule_report(team: str) -> tuple[dict[str, Any], int]:
        # Several workers may get this request at once: replace_existing keeps one job.
        job = scheduler.add_job(
            send_report,
            "interval",
            seconds=1,
            args=[team],
            id=f"report-{team}",
            replace_existing=True,
        )
        return {"id": job.id, "next_run_time": str(job.next_run_time)}, 201

    @app.get("/reports/<team>")
    def report_runs(team: str) -> dict[str, Any]:
        runs = scheduler.get_runs(f"report-{team}")
        return {
            "scheduler": scheduler.id,
            "runs": [
                {
                    "scheduled_time": run.scheduled_time.isoformat(),
                    "outcome": run.outcome,
                    "result": run.result,
                    "scheduler": run.scheduler_id,
                }
                for run in runs
            ],
        }

    return app


if __name__ == "__main__":
    # Import this file as ``flask_app``, not ``__main__``: stored jobs then refer to
    # flask_app:send_report, which every worker process (flask, gunicorn) can import.
    import flask_app

    flask_app.create_app().run(port=int(os.environ.get("PORT", "5000")))
