"""The trigger protocol and the registry that maps aliases and dict kinds to classes.

A trigger is a pure value: ``next(after)`` gives the first fire instant strictly after
``after``, or ``None`` when the trigger is exhausted. Stores persist triggers as the plain
dict of ``to_dict()`` (JSON types only, with a ``"kind"`` key), and read them back with
:func:`trigger_from_dict`.

Third-party triggers join the registry through the ``horae.triggers`` entry point group
(``name = "package.module:TriggerClass"``) or by calling :func:`register_trigger`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import json
from collections.abc import Mapping
from datetime import datetime, tzinfo
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from horae.errors import TriggerError

__all__ = [
    "Trigger",
    "TriggerClass",
    "create_trigger",
    "register_trigger",
    "trigger_from_dict",
]


@runtime_checkable
class Trigger(Protocol):
    """What the scheduler needs of a trigger."""

    def next(self, after: datetime) -> datetime | None:
        """The first fire instant strictly after ``after`` (aware), or ``None``."""
        ...

    def to_dict(self) -> dict[str, Any]:
        """A plain-JSON dict with a ``"kind"`` key that :func:`trigger_from_dict` reads."""
        ...

    def describe(self) -> str:
        """A short English description, for ``print_jobs()`` and the CLI."""
        ...


class TriggerClass(Protocol):
    """A trigger class that can join the registry."""

    kind: ClassVar[str]

    def __call__(self, *args: Any, **kwargs: Any) -> Trigger: ...

    def from_dict(self, data: Mapping[str, Any]) -> Trigger: ...


_registry: dict[str, Any] = {}
_C = TypeVar("_C")
_entry_points_loaded = False


def register_trigger(cls: _C, kind: str | None = None) -> _C:
    """Register a trigger class under its ``kind`` (usable as a decorator).

    The class needs a ``kind`` class attribute (or pass ``kind``), a classmethod
    ``from_dict(data)`` and the :class:`Trigger` methods.
    """
    name = kind or getattr(cls, "kind")  # noqa: B009 - cls is a type variable
    _registry[name] = cls
    return cls


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group="horae.triggers"):
        if ep.name not in _registry:
            _registry[ep.name] = ep.load()


def _lookup(kind: str, what: str) -> Any:
    # Importing the package registers the built-in triggers.
    import horae.triggers  # noqa: F401

    cls = _registry.get(kind)
    if cls is None:
        _load_entry_points()
        cls = _registry.get(kind)
    if cls is None:
        known = ", ".join(repr(k) for k in sorted(_registry))
        raise TriggerError(what, f"{what}: unknown trigger {kind!r}; known triggers are {known}")
    return cls


@functools.cache
def _parameters(cls: Any) -> tuple[list[str], bool, bool]:
    """The keyword arguments a trigger class takes, whether it takes ``**kwargs``, and
    whether it takes ``timezone``.

    Cached per class: ``inspect.signature`` costs more than building the trigger, and
    ``add_job`` calls this for every job.
    """
    params = inspect.signature(cls).parameters
    takes_var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    accepted = [n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return accepted, takes_var_kw, "timezone" in params


def create_trigger(
    alias: str, kwargs: Mapping[str, Any], default_timezone: tzinfo | None = None
) -> Trigger:
    """Build a trigger from its alias (``"cron"``, ``"interval"``, ...) and arguments.

    ``default_timezone`` is passed as ``timezone`` to triggers that take one when the
    caller did not give it (the scheduler passes its own zone).

    Raises:
        TriggerError: the alias is unknown, or an argument is not one the trigger takes
            (naming the closest valid argument), or an argument is invalid.
    """
    cls = _lookup(alias, "trigger")
    accepted, takes_var_kw, takes_timezone = _parameters(cls)
    if not takes_var_kw:
        for name in kwargs:
            if name not in accepted:
                close = difflib.get_close_matches(name, accepted, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TriggerError(
                    name,
                    f"{name}: the {alias!r} trigger takes no argument {name!r}{hint} "
                    f"(it takes {', '.join(accepted)})",
                )
    args = dict(kwargs)
    if default_timezone is not None and takes_timezone and "timezone" not in args:
        args["timezone"] = default_timezone
    trigger: Trigger = cls(**args)
    return trigger


def trigger_from_dict(data: Mapping[str, Any]) -> Trigger:
    """Rebuild a trigger from what its ``to_dict()`` returned.

    Raises:
        TriggerError: the dict has no known ``kind``, or its values are invalid.
    """
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise TriggerError("kind", f"kind: a trigger dict needs a 'kind' string, got {kind!r}")
    try:
        key = json.dumps(data, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        key = None
    if key is not None:
        # Triggers are immutable values, so one instance may serve every job (and every
        # read of one job) with the same dict; parsing a cron expression again for each
        # stored job read costs far more than this lookup.
        cached = _from_dict_cache.get(key)
        if cached is not None:
            return cached
    trigger: Trigger = _lookup(kind, "kind").from_dict(data)
    if key is not None:
        if len(_from_dict_cache) >= _FROM_DICT_CACHE_SIZE:
            _from_dict_cache.pop(next(iter(_from_dict_cache)))
        _from_dict_cache[key] = trigger
    return trigger


_FROM_DICT_CACHE_SIZE = 4096
_from_dict_cache: dict[str, Trigger] = {}
