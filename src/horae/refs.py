"""Callables and their ``"module:qualname"`` references.

Persistent stores keep a reference to a job's callable, never pickled code, so only a
callable that can be imported again by its reference can be stored there.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from horae.errors import InvalidCallableError

__all__ = ["callable_to_ref", "ref_to_callable"]


def callable_to_ref(func: Callable[..., Any]) -> str:
    """The ``"module:qualname"`` reference that imports back to ``func``.

    Raises:
        InvalidCallableError: ``func`` is a lambda, a nested function, a bound method of
            an instance or anything else that its reference would not import back to.
    """
    if inspect.ismethod(func) and not inspect.isclass(func.__self__):
        raise InvalidCallableError(
            f"{func!r} is a method bound to an instance, which a store cannot keep; "
            "use a module-level function (or a static or class method)"
        )
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname:
        raise InvalidCallableError(
            f"{func!r} has no module and qualified name to store; use a module-level function"
        )
    if "<lambda>" in qualname:
        raise InvalidCallableError(
            f"{qualname} in {module} is a lambda, which a store cannot keep; "
            "define it with def at module level"
        )
    if "<locals>" in qualname:
        raise InvalidCallableError(
            f"{qualname} in {module} is defined inside a function, which a store cannot "
            "import again; move it to module level"
        )
    ref = f"{module}:{qualname}"
    try:
        found = ref_to_callable(ref)
    except InvalidCallableError:
        found = None
    if found is not func and getattr(found, "__func__", found) is not getattr(
        func, "__func__", func
    ):
        raise InvalidCallableError(
            f"{ref!r} does not import back to {func!r}; use a module-level function"
        )
    return ref


def ref_to_callable(ref: str) -> Callable[..., Any]:
    """Import the callable a ``"module:qualname"`` reference names.

    Raises:
        InvalidCallableError: the reference is malformed, the module cannot be imported,
            it has no such attribute, or the attribute is not callable.
    """
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise InvalidCallableError(
            f"{ref!r} is not a callable reference; write it as 'package.module:function'"
        )
    module_name, qualname = ref.split(":")
    if not module_name or not qualname:
        raise InvalidCallableError(
            f"{ref!r} is not a callable reference; write it as 'package.module:function'"
        )
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidCallableError(
            f"{ref!r}: cannot import module {module_name!r} ({exc})"
        ) from exc
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise InvalidCallableError(
                f"{ref!r}: module {module_name!r} has no attribute {qualname!r}"
            ) from None
    if not callable(obj):
        raise InvalidCallableError(f"{ref!r} names {obj!r}, which is not callable")
    return obj  # type: ignore[no-any-return]
