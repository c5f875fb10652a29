"""AndTrigger and OrTrigger: fire when all, or any, of several triggers fire."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, TypeVar

import attrs

from horae._time import require_aware
from horae.errors import TriggerError
from horae.triggers._args import reject_unknown
from horae.triggers.base import Trigger, register_trigger, trigger_from_dict

__all__ = ["AndTrigger", "OrTrigger"]

_UTC = timezone.utc
_RESOLUTION = timedelta(microseconds=1)

#: How many rounds :class:`AndTrigger` searches for a common fire time before it gives up.
MAX_AND_STEPS = 10_000


def _check_children(kind: str, triggers: object) -> tuple[Trigger, ...]:
    if isinstance(triggers, (str, bytes, Mapping)) or not isinstance(triggers, Iterable):
        raise TriggerError(
            "triggers",
            f"triggers: {triggers!r} is not a list of triggers; give for example "
            f"{kind.title()}Trigger([CronTrigger(hour=9), IntervalTrigger(hours=2)])",
        )
    children = tuple(triggers)
    if not children:
        raise TriggerError(
            "triggers",
            f"triggers: [] is empty; the {kind} trigger needs at least one trigger to combine",
        )
    for index, child in enumerate(children):
        if not isinstance(child, Trigger):
            raise TriggerError(
                "triggers",
                f"triggers[{index}]: {child!r} is not a trigger (it needs next(), to_dict() "
                "and describe()); give trigger instances such as IntervalTrigger(hours=2)",
            )
    return children


def _children_from_dict(data: Mapping[str, Any]) -> list[Trigger]:
    unknown = {k: v for k, v in data.items() if k not in ("kind", "triggers")}
    reject_unknown(str(data.get("kind")), unknown, ("triggers",))
    children = data.get("triggers")
    if not isinstance(children, list) or not all(isinstance(c, Mapping) for c in children):
        raise TriggerError("triggers", f"triggers: {children!r} is not a list of trigger dicts")
    return [trigger_from_dict(child) for child in children]


def _describe_children(children: tuple[Trigger, ...]) -> str:
    # Parentheses keep nested combinations readable: "all of: A; (any of: B; C)".
    return "; ".join(
        f"({child.describe()})" if isinstance(child, _Combination) else child.describe()
        for child in children
    )


def _utc(value: datetime) -> datetime:
    return value.astimezone(_UTC)


C = TypeVar("C", bound="_Combination")


@attrs.frozen(init=False, repr=False)
class _Combination:
    """What AndTrigger and OrTrigger share: their children, and how they are stored and
    shown."""

    kind: ClassVar[str]
    _joins: ClassVar[str]  # "all" or "any"

    triggers: tuple[Trigger, ...]

    def __init__(self, triggers: Iterable[Trigger]) -> None:
        self.__attrs_init__(_check_children(self.kind, triggers))

    def to_dict(self) -> dict[str, Any]:
        """``{"kind": "and" | "or", "triggers": [<each child's to_dict()>]}``."""
        return {"kind": self.kind, "triggers": [child.to_dict() for child in self.triggers]}

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        """Rebuild the trigger, and its children, from :meth:`to_dict`'s output."""
        return cls(_children_from_dict(data))

    def describe(self) -> str:
        """``"when all of: <child>; <child>"`` (``any of`` for OrTrigger)."""
        return f"when {self._joins} of: " + _describe_children(self.triggers)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.triggers)!r})"


@register_trigger
@attrs.frozen(init=False, repr=False)
class AndTrigger(_Combination):
    """Fire at the instants at which every one of ``triggers`` fires.

    The search advances the children that lag behind to the latest child's next fire
    time until all agree. It returns ``None`` as soon as a child is exhausted, and gives
    up (returning ``None``) after 10,000 rounds without agreement: ``hour=9`` in New York
    and ``hour=9`` in London never coincide. Children may be in different zones; fire
    times are compared as instants.

    Args:
        triggers: the triggers to combine, at least one.

    Raises:
        TriggerError: on ``triggers``, when it is empty or holds something that is not a
            trigger.

    Example::

        AndTrigger([CronTrigger(day=13), CronTrigger(day_of_week="fri")])
    """

    kind: ClassVar[str] = "and"
    _joins: ClassVar[str] = "all"

    def next(self, after: datetime) -> datetime | None:
        """The first instant strictly after ``after`` at which every child fires."""
        require_aware(after)
        times: list[datetime] = []
        for child in self.triggers:
            fire = child.next(after)
            if fire is None:
                return None
            times.append(fire)
        for _ in range(MAX_AND_STEPS):
            latest = max(times, key=_utc)
            latest_utc = _utc(latest)
            if all(_utc(fire) == latest_utc for fire in times):
                return latest
            # Fire times have microsecond resolution: the first fire time at or after
            # ``latest`` is the first one strictly after ``latest`` minus a microsecond.
            just_before = latest_utc - _RESOLUTION
            for index, child in enumerate(self.triggers):
                if _utc(times[index]) < latest_utc:
                    fire = child.next(just_before)
                    if fire is None:
                        return None
                    times[index] = fire
        return None


@register_trigger
@attrs.frozen(init=False, repr=False)
class OrTrigger(_Combination):
    """Fire whenever any of ``triggers`` fires (once per instant).

    Exhausted only when every child is. Children may be in different zones; fire times
    are compared as instants.

    Args:
        triggers: the triggers to combine, at least one.

    Raises:
        TriggerError: on ``triggers``, when it is empty or holds something that is not a
            trigger.

    Example::

        OrTrigger([CronTrigger(hour=9, day_of_week="mon-fri"), CronTrigger(hour=11,
                   day_of_week="sat,sun")])
    """

    kind: ClassVar[str] = "or"
    _joins: ClassVar[str] = "any"

    def next(self, after: datetime) -> datetime | None:
        """The earliest next fire time of any child, strictly after ``after``."""
        require_aware(after)
        fires = [fire for child in self.triggers if (fire := child.next(after)) is not None]
        return min(fires, key=_utc) if fires else None
