"""The jobs of the fault suite: runs that write down their start and their end.

Every scheduler process appends one JSON line per start and one per end of a run to a
file of its own (named by ``$HORAE_FAULTS_LOG``). A process killed in the middle of a run
leaves the start line without an end line: the suite ends such a run at the kill time.
Each line names the run (``run_id``, ``attempt``), its fire time and its ``key``
(``current_run().key``, the same for every attempt of a fire time).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from typing import IO, Any

import anyio

from horae import Run, current_run

LOG_ENV = "HORAE_FAULTS_LOG"

_logs: dict[str, IO[str]] = {}


def _log() -> IO[str]:
    path = os.environ[LOG_ENV]
    file = _logs.get(path)
    if file is None:
        # Line-buffered: each line is one write(2), which reaches the kernel (and so the
        # file) before a SIGKILL can take it away.
        file = _logs[path] = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115
    return file


def _write(kind: str, run: Run, **extra: Any) -> None:
    line = {
        "kind": kind,
        "job_id": run.job_id,
        "scheduled_time": run.scheduled_time.isoformat(),
        "attempt": run.attempt,
        "run_id": str(run.id),
        "key": str(run.key),
        "scheduler_id": run.scheduler_id,
        "pid": os.getpid(),
        # CLOCK_MONOTONIC is one clock for every process of the machine: runs of
        # different processes can be compared for overlap, and with the kill times.
        "mono": time.monotonic(),
        "wall": time.time(),
        **extra,
    }
    _log().write(json.dumps(line) + "\n")


def fails_first(run: Run) -> bool:
    """Whether the first attempt of this fire time fails (one fire time in three)."""
    digest = hashlib.sha1(f"{run.job_id}@{run.scheduled_time.isoformat()}".encode()).digest()
    return digest[0] % 3 == 0


async def work(pause_ms: int = 300, flaky: bool = False, hold: float = 0.0) -> None:
    """Run for a random 0..``pause_ms`` ms (``hold`` s if given); ``flaky``: see fails_first."""
    run = current_run()
    _write("start", run)
    await anyio.sleep(hold or random.uniform(0, pause_ms / 1000))
    if flaky and run.attempt == 1 and fails_first(run):
        _write("end", run, ok=False)
        raise RuntimeError(f"{run.job_id}: the first attempt for {run.scheduled_time} fails")
    _write("end", run, ok=True)


async def hold(seconds: float) -> None:
    """Run for ``seconds``; a run cancelled meanwhile (``overlap="cancel_other"``) ends
    with a ``cancelled`` end line, written as the cancellation reaches it."""
    run = current_run()
    _write("start", run)
    try:
        await anyio.sleep(seconds)
    except anyio.get_cancelled_exc_class():
        _write("end", run, ok=False, cancelled=True)
        raise
    _write("end", run, ok=True)


async def fail() -> None:
    """Fail at once, every time."""
    run = current_run()
    _write("start", run)
    _write("end", run, ok=False)
    raise RuntimeError(f"{run.job_id}: the run for {run.scheduled_time} fails")
