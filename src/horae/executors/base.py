"""The executor protocol: how a run's callable is called."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["Executor"]


@runtime_checkable
class Executor(Protocol):
    """Runs job callables. The scheduler owns the task that awaits :meth:`run`.

    Cancelling that task (a job ``timeout``, ``shutdown(wait=False)``) must cancel the
    call where the executor can, and return promptly where it cannot.
    """

    async def start(self) -> None:
        """Prepare to run (called once when the scheduler starts)."""
        ...

    async def stop(self) -> None:
        """Release resources (called once when the scheduler has stopped)."""
        ...

    def check(self, func: Callable[..., Any]) -> None:
        """Raise ``InvalidCallableError`` now if this executor could never run ``func``."""
        ...

    async def run(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """Call ``func(*args, **kwargs)`` and return its value (or raise its exception)."""
        ...
