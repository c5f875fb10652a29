"""The thread executor: sync callables in worker threads, with a capacity limit."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.to_thread

from horae._execution import current_run
from horae.errors import JobArgumentError

logger = logging.getLogger("horae.scheduler")

__all__ = ["ThreadExecutor"]


class ThreadExecutor:
    """Runs sync callables with ``anyio.to_thread.run_sync``, at most ``max_workers`` at once.

    A thread cannot be cancelled: when a run times out or the scheduler stops without
    waiting, the run is reported at once and the thread finishes on its own.

    Args:
        max_workers: how many callables may run at the same time (default 10).
    """

    def __init__(self, max_workers: int = 10) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise JobArgumentError(
                f"max_workers: {max_workers!r} is not allowed; give a whole number of at least 1"
            )
        self.max_workers = max_workers
        self._limiter: anyio.CapacityLimiter | None = None

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self.max_workers})"

    async def start(self) -> None:
        """Create the capacity limiter (it belongs to the running event loop)."""
        self._limiter = anyio.CapacityLimiter(self.max_workers)

    async def stop(self) -> None:
        """Forget the limiter; threads still running finish on their own."""
        self._limiter = None

    def check(self, func: Callable[..., Any]) -> None:
        """Any callable can run in a thread."""

    async def run(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """Call ``func`` in a worker thread; the job's context variables go with it.

        When the run is cancelled (its timeout, a shutdown that does not wait), the
        thread goes on; what it finally returns or raises is logged then, as the run was
        recorded already.
        """
        call = _Call(functools.partial(func, *args, **kwargs))
        try:
            return await anyio.to_thread.run_sync(
                call, limiter=self._limiter, abandon_on_cancel=True
            )
        except anyio.get_cancelled_exc_class():
            call.given_up = time.monotonic()
            raise


class _Call:
    """A job's call in a thread, which reports its end if the run was given up meanwhile."""

    __slots__ = ("call", "given_up")

    def __init__(self, call: Callable[[], Any]) -> None:
        self.call = call
        self.given_up: float | None = None

    def __call__(self) -> Any:
        try:
            result = self.call()
        except BaseException as exc:
            self._report(f"raised {type(exc).__name__}: {exc}")
            raise
        self._report(f"returned {result!r:.200}")
        return result

    def _report(self, what: str) -> None:
        given_up = self.given_up
        if given_up is None:
            return
        run = current_run()
        logger.warning(
            "job %r: the thread of the run for %s, given up %.1f s ago (timeout or "
            "shutdown), has now %s",
            run.job_id,
            run.scheduled_time,
            time.monotonic() - given_up,
            what,
        )
