"""Module-level job callables for the process executor tests (imported in the workers)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

from horae import current_run


def echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Return what it was given, and the pid of the worker that ran it."""
    return {"args": args, "kwargs": kwargs, "pid": os.getpid()}


async def async_echo(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return {"args": args, "kwargs": kwargs, "pid": os.getpid()}


def whoami() -> dict[str, Any]:
    run = current_run()
    return {"job_id": run.job_id, "attempt": run.attempt, "pid": os.getpid()}


def fail(message: str) -> None:
    raise ValueError(message)


class UnpicklableError(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def fail_unpicklable() -> None:
    raise UnpicklableError(1, 2)


def exit_hard(code: int) -> None:
    os._exit(code)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def returns_object() -> object:
    return object()


def sleep(seconds: float, pid_file: str = "") -> int:
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def stamp(directory: str, name: str, seconds: float) -> int:
    """Record when it started and ended (system-wide monotonic clock) and its pid."""
    start = time.monotonic()
    time.sleep(seconds)
    end = time.monotonic()
    Path(directory, name).write_text(f"{start} {end} {os.getpid()}")
    return os.getpid()
