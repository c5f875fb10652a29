"""The clock a scheduler reads time from and waits on.

Scheduling logic never calls ``datetime.now()``: it asks its clock, so that tests can
substitute :class:`horae.testing.FakeClock` and move time without sleeping.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Where a scheduler gets the time from."""

    def now(self) -> datetime:
        """The current instant, timezone-aware."""
        ...

    async def wait(self, deadline: datetime | None, wakeup: anyio.Event) -> None:
        """Return when ``deadline`` has come (never, if ``None``) or ``wakeup`` is set."""
        ...


class SystemClock:
    """The real clock (UTC instants from the system time)."""

    def now(self) -> datetime:
        """The current instant in UTC."""
        return datetime.now(timezone.utc)

    async def wait(self, deadline: datetime | None, wakeup: anyio.Event) -> None:
        """Sleep until ``deadline`` or until ``wakeup`` is set."""
        if deadline is None:
            await wakeup.wait()
            return
        delay = (deadline - self.now()).total_seconds()
        if delay <= 0:
            return
        with anyio.move_on_after(delay):
            await wakeup.wait()
