"""The job of the multi-process exactly-once test: it writes down each run it makes.

Every scheduler process of ``test_multiprocess.py`` appends one line per run to a file of
its own (named by ``HORAE_MP_RESULTS``): those files are the results table the test counts.
"""

from __future__ import annotations

import json
import os
import time
from typing import IO

import anyio

from horae import current_run

RESULTS_ENV = "HORAE_MP_RESULTS"

_results: dict[str, IO[str]] = {}


def _results_file() -> IO[str]:
    path = os.environ[RESULTS_ENV]
    file = _results.get(path)
    if file is None:
        # Line-buffered: each run's line reaches the file when it is written, so a process
        # that is killed leaves every finished run behind.
        file = _results[path] = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    return file


async def record(duration: float = 0.0) -> None:
    """Run for ``duration`` seconds and append what ran, where and when to the results."""
    run = current_run()
    at = time.time()
    # CLOCK_MONOTONIC is one clock for every process of the machine, so runs of different
    # processes can be compared for overlap.
    started = time.monotonic()
    if duration:
        await anyio.sleep(duration)
    ended = time.monotonic()
    line = {
        "job_id": run.job_id,
        "scheduled_time": run.scheduled_time.isoformat(),
        "pid": os.getpid(),
        "scheduler_id": run.scheduler_id,
        "at": at,
        "started": started,
        "ended": ended,
    }
    _results_file().write(json.dumps(line) + "\n")
