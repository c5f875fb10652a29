"""Helpers for testing code that schedules jobs: a clock you move by hand.

Example::

    clock = FakeClock("2027-01-01T00:00:00+00:00")
    async with AsyncScheduler(clock=clock) as scheduler:
        await scheduler.add_job(tick, "interval", seconds=5)
        clock.advance(5)
        await wait_idle(scheduler)   # the run due at 00:00:05 has finished
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import anyio
import anyio.from_thread
import anyio.lowlevel

if TYPE_CHECKING:
    from horae.scheduler import AsyncScheduler

__all__ = ["FakeClock", "wait_idle"]


class FakeClock:
    """A clock that moves only when :meth:`advance` (or :meth:`set`) is called.

    Args:
        start: the initial instant (an aware datetime or ISO 8601 string); defaults to
            2000-01-01 00:00 UTC.
    """

    def __init__(self, start: datetime | str | None = None) -> None:
        if start is None:
            start = datetime(2000, 1, 1, tzinfo=timezone.utc)
        elif isinstance(start, str):
            start = datetime.fromisoformat(start)
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError(f"FakeClock needs an aware start time, got naive {start!r}")
        self._now = start
        self._lock = threading.Lock()
        self._waiters: dict[anyio.Event, tuple[datetime | None, object, int]] = {}
        # event -> (deadline, the waiter's event loop token, the waiter's thread id)

    def now(self) -> datetime:
        """The clock's current instant."""
        return self._now

    def advance(self, delta: float | timedelta) -> datetime:
        """Move time forward by ``delta`` (seconds or timedelta) and wake every waiter."""
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        if delta < timedelta(0):
            raise ValueError("a FakeClock cannot go back in time")
        with self._lock:
            instant = self._now + delta
            due = self._move(instant)
        self._wake(due)
        return instant

    def set(self, instant: datetime) -> datetime:
        """Move time to ``instant`` (not earlier than now) and wake every waiter."""
        with self._lock:
            due = self._move(instant)
        self._wake(due)
        return instant

    def _move(self, instant: datetime) -> list[tuple[anyio.Event, object, int]]:
        # Called with the lock held. Moving time and collecting the waiters it wakes is
        # one step, so a waiter registering in wait() either sees the old time and is
        # collected here, or sees the new time and does not wait.
        if instant < self._now:
            raise ValueError("a FakeClock cannot go back in time")
        self._now = instant
        return [
            (event, token, thread)
            for event, (deadline, token, thread) in self._waiters.items()
            if deadline is not None and deadline <= instant
        ]

    @staticmethod
    def _wake(due: list[tuple[anyio.Event, object, int]]) -> None:
        # Without the lock: waking a waiter of another thread waits for that thread's
        # event loop, which may be taking the lock in wait().
        for event, token, thread in due:
            if thread == threading.get_ident():
                event.set()
            else:
                # advance() from another thread (a sync test driving the facade).
                anyio.from_thread.run_sync(event.set, token=token)  # type: ignore[arg-type]

    async def wait(self, deadline: datetime | None, wakeup: anyio.Event) -> None:
        """Return when time reaches ``deadline`` or ``wakeup`` is set."""
        token = anyio.lowlevel.current_token()
        with self._lock:
            if deadline is not None and deadline <= self._now:
                return
            self._waiters[wakeup] = (deadline, token, threading.get_ident())
        try:
            await wakeup.wait()
        finally:
            with self._lock:
                self._waiters.pop(wakeup, None)

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved ``seconds`` forward."""
        await self.wait(self._now + timedelta(seconds=seconds), anyio.Event())


async def wait_idle(scheduler: AsyncScheduler) -> None:
    """Wait until ``scheduler`` has nothing left to do at the current (fake) time.

    It returns when the scheduler's loop is waiting for a future fire time, no run is in
    progress and no async listener is pending. Use it after :meth:`FakeClock.advance`.
    """
    await scheduler._wait_idle()
