"""The async executor: coroutine functions run in the scheduler's own task group."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["AsyncExecutor"]


class AsyncExecutor:
    """Awaits coroutine functions directly on the event loop.

    A callable that returns an awaitable (a ``functools.partial`` of a coroutine
    function, say) is awaited too. A plain sync callable would block the event loop, so
    it is refused at ``add_job``: route it to a thread executor instead.
    """

    def __repr__(self) -> str:
        return "AsyncExecutor()"

    async def start(self) -> None:
        """Nothing to prepare."""

    async def stop(self) -> None:
        """Nothing to release."""

    def check(self, func: Callable[..., Any]) -> None:
        """Accept coroutine functions and callables that may return awaitables."""
        from horae.errors import InvalidCallableError

        target = func
        while hasattr(target, "func"):  # functools.partial
            target = target.func
        if inspect.isfunction(target) and not (
            inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)
        ):
            raise InvalidCallableError(
                f"{getattr(target, '__qualname__', target)!r} is a plain function; the async "
                "executor would block the event loop running it. Use executor='thread' "
                "(or leave executor unset: sync callables go to threads)"
            )

    async def run(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """Call ``func`` and await what it returns."""
        result = func(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result
