"""Events as JSON, for schedulers that share them through their store.

A store carries *messages*: one JSON object holding the sender (a token of the store
instance that sent it, so that it can skip its own) and a batch of events::

    {"v": 1, "from": "<sender>", "events": [{"type": "JobExecuted", ...}, ...]}

Each event is its class name and its fields: instants as ISO 8601 text, run ids as
text, results through the store's serializer (a result it cannot store travels as
``None``). A ``JobError``'s exception object stays in the process where it was raised;
its traceback text travels. A reader skips (and logs) event types it does not know, so
that a newer horae may send events an older one has never heard of.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import attrs

from horae.errors import DeserializationError, SerializationError
from horae.events import (
    AllJobsRemoved,
    Event,
    JobAbandoned,
    JobAdded,
    JobCancelled,
    JobCancelRequested,
    JobError,
    JobExecuted,
    JobMissed,
    JobModified,
    JobRemoved,
    JobSkipped,
    JobSubmitted,
    JobTimedOut,
)
from horae.serializers import Serializer

__all__ = ["MESSAGE_VERSION", "event_from_json", "event_to_json", "pack", "unpack"]

logger = logging.getLogger("horae.events")

#: Version of the message layout; readers skip messages of other versions.
MESSAGE_VERSION = 1

_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        JobAdded,
        JobModified,
        JobRemoved,
        AllJobsRemoved,
        JobSubmitted,
        JobExecuted,
        JobError,
        JobMissed,
        JobSkipped,
        JobTimedOut,
        JobAbandoned,
        JobCancelled,
        JobCancelRequested,
    )
}
# Field names and the attrs fields of each type, looked up once.
_FIELDS: dict[type[Event], tuple[str, ...]] = {
    cls: tuple(f.name for f in attrs.fields(cls) if f.name != "exception")
    for cls in _TYPES.values()
}
_INSTANTS = frozenset({"timestamp", "scheduled_time", "before"})
# Text fields that may be long, cut from the front when a message must be small
# (the end of a traceback names the exception).
_LONG_TEXT = ("traceback", "reason")

_dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":")).encode


def event_to_json(event: Event, serializer: Serializer) -> dict[str, Any]:
    """The plain JSON values of a job or run event.

    Raises:
        SerializationError: ``event`` is not of a type that travels between schedulers.
    """
    cls = type(event)
    names = _FIELDS.get(cls)
    if names is None:
        raise SerializationError(
            f"{cls.__qualname__} events do not travel between schedulers; "
            f"these do: {', '.join(_TYPES)}"
        )
    data: dict[str, Any] = {"type": cls.__name__}
    for name in names:
        value = getattr(event, name)
        if name == "result":
            if value is not None:
                try:
                    value = serializer.dumps(value, "result")
                except SerializationError:
                    value = None  # as in the run history: the outcome travels, not the value
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, UUID):
            value = str(value)
        data[name] = value
    return data


def event_from_json(data: dict[str, Any], serializer: Serializer) -> Event:
    """The event :func:`event_to_json` described.

    Fields the reader does not know (sent by a newer horae) are ignored. A result the
    serializer cannot read is ``None``.

    Raises:
        DeserializationError: the type is unknown or a field is invalid.
    """
    try:
        cls = _TYPES[data["type"]]
    except (KeyError, TypeError):
        raise DeserializationError(
            f"unknown event type {data.get('type') if isinstance(data, dict) else data!r}"
        ) from None
    values: dict[str, Any] = {}
    try:
        for name in _FIELDS[cls]:
            if name not in data:
                continue
            value = data[name]
            if name in _INSTANTS:
                value = datetime.fromisoformat(value)
            elif name == "run_id":
                value = UUID(value)
            elif name == "result" and value is not None:
                try:
                    value = serializer.loads(value)
                except DeserializationError:
                    value = None
            values[name] = value
        return cls(**values)
    except (TypeError, ValueError, AttributeError) as exc:
        raise DeserializationError(f"cannot read a {cls.__name__} event: {exc}") from exc


def pack(
    sender: str, events: Sequence[Event], serializer: Serializer, limit: int | None = None
) -> list[str]:
    """Messages carrying ``events``, in order; each at most ``limit`` bytes (if given).

    An event too large for a message of its own (a huge traceback, a large result) is
    cut: its result dropped, then its traceback shortened from the front; it is
    logged, never dropped without a trace.
    """
    head = f'{{"v":{MESSAGE_VERSION},"from":{_dumps(sender)},"events":['
    tail = "]}"
    if limit is None:
        body = ",".join(_dumps(event_to_json(event, serializer)) for event in events)
        return [head + body + tail] if events else []
    budget = limit - len(head.encode()) - len(tail)
    messages: list[str] = []
    parts: list[str] = []
    size = 0
    for event in events:
        text = _dumps(event_to_json(event, serializer))
        length = len(text.encode())
        if length > budget:
            cut = _fit(event, text, budget, serializer)
            if cut is None:
                continue
            text, length = cut, len(cut.encode())
        if parts and size + 1 + length > budget:
            messages.append(head + ",".join(parts) + tail)
            parts, size = [], 0
        size += length + (1 if parts else 0)
        parts.append(text)
    if parts:
        messages.append(head + ",".join(parts) + tail)
    return messages


def _fit(event: Event, text: str, budget: int, serializer: Serializer) -> str | None:
    """``event``'s JSON cut to ``budget`` bytes, or ``None`` (logged) if it cannot be."""
    data = event_to_json(event, serializer)
    original = len(text.encode())
    if data.get("result") is not None:
        data["result"] = None
        text = _dumps(data)
    for name in _LONG_TEXT:
        value = data.get(name)
        while isinstance(value, str) and value and len(text.encode()) > budget:
            excess = len(text.encode()) - budget
            # Escapes (\n, \") make the JSON longer than the text: cutting `excess`
            # characters (plus the marker) always gains at least `excess` bytes.
            keep = max(len(value) - excess - 64, 0)
            value = f"[... {len(value) - keep} characters cut ...]\n" + value[len(value) - keep :]
            if keep == 0:
                value = ""
            data[name] = value
            text = _dumps(data)
    size = len(text.encode())
    job = getattr(event, "job_id", None)
    if size > budget:
        logger.error(
            "a %s event of job %r is %d bytes, more than the %d a message of this store "
            "can carry even when cut; other schedulers do not see it",
            type(event).__name__,
            job,
            original,
            budget,
        )
        return None
    logger.warning(
        "a %s event of job %r was cut from %d to %d bytes (its result or traceback) to "
        "fit a message of this store; other schedulers see the shortened version",
        type(event).__name__,
        job,
        original,
        size,
    )
    return text


def unpack(message: str | bytes, serializer: Serializer) -> tuple[str, list[Event]]:
    """The sender and the events of a message. Events (or whole messages) that cannot
    be read, such as types a newer horae sends, are logged and skipped."""
    try:
        data = json.loads(message)
        version = data["v"]
        sender = data["from"]
        items = data["events"]
    except (ValueError, TypeError, KeyError) as exc:
        logger.error("skipping an event message that cannot be read: %s", exc)
        return "", []
    if not isinstance(items, list):
        # Whoever can publish on the channel can send anything: raising here would end
        # a store's listener (Redis) or poller thread (SQLite) for good.
        logger.error("skipping an event message whose events are not a list: %.80r", items)
        return str(sender), []
    if version != MESSAGE_VERSION:
        logger.warning(
            "skipping an event message of layout version %r (this horae reads %d); "
            "upgrade horae here to see other schedulers' events",
            version,
            MESSAGE_VERSION,
        )
        return str(sender), []
    events: list[Event] = []
    for item in items:
        if not isinstance(item, dict) or item.get("type") not in _TYPES:
            # Most likely an event type of a newer horae: not an error here.
            logger.debug("skipping an event of unknown type from another scheduler: %r", item)
            continue
        try:
            events.append(event_from_json(item, serializer))
        except DeserializationError as exc:
            logger.warning("skipping an event from another scheduler: %s", exc)
    return str(sender), events
