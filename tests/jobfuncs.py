"""Module-level job callables for the tests (importable by reference)."""

from __future__ import annotations

import threading
from typing import Any

from horae import current_run

calls: list[Any] = []
lock = threading.Lock()


async def async_add(a: int, b: int = 0) -> int:
    calls.append(("async_add", a, b))
    return a + b


def sync_add(a: int, b: int = 0) -> int:
    with lock:
        calls.append(("sync_add", a, b))
    return a + b


async def async_fail(message: str = "boom") -> None:
    raise RuntimeError(message)


def sync_fail(message: str = "boom") -> None:
    raise ValueError(message)


async def whoami() -> str:
    return current_run().job_id


def sync_whoami() -> str:
    return current_run().job_id


def not_callable_value() -> None:  # pragma: no cover - placeholder
    pass


async def announce_then_hang() -> None:
    """Say so on stdout, then never return (tests/test_signals.py stops it)."""
    import anyio

    print("job started", flush=True)
    await anyio.sleep_forever()


def sync_announce_then_wait() -> None:
    """The same in a thread, which ends after a while (a thread cannot be cancelled)."""
    import time

    print("job started", flush=True)
    time.sleep(1.0)
