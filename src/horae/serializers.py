"""Serializers for job arguments and run results kept in persistent stores.

The default, :class:`JSONSerializer`, writes JSON with tagged values for the types a
scheduler's jobs commonly take (datetime, date, time, timedelta, UUID, Decimal, bytes,
tuple, set, frozenset) and for attrs or dataclass types you register. Anything else is
refused when the job is added, with the path of the offending value::

    args[1].when: cannot store <socket.socket ...>; JSONSerializer stores ...

:class:`PickleSerializer` stores anything picklable, but only use it when you trust
everyone who can write to the store: unpickling runs code, so whoever can write a row
could run code in every scheduler that reads it.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import pickle
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import attrs

from horae.errors import DeserializationError, SerializationError

__all__ = ["JSONSerializer", "PickleSerializer", "Serializer"]

_TAG = "$type"


@runtime_checkable
class Serializer(Protocol):
    """Turns values into text a store can keep, and back."""

    def dumps(self, value: Any, path: str = "value") -> str:
        """Text for ``value``; raises ``SerializationError`` naming ``path`` if it cannot."""
        ...

    def loads(self, text: str) -> Any:
        """The value ``dumps`` wrote; raises ``DeserializationError``."""
        ...


class JSONSerializer:
    """JSON with tagged types; the default, safe to share between processes.

    Args:
        types: attrs or dataclass classes to accept as values (stored field by field and
            rebuilt by calling the class with the fields as keyword arguments).
    """

    def __init__(self, types: list[type] | tuple[type, ...] = ()) -> None:
        self._by_class: dict[type, str] = {}
        self._by_name: dict[str, type] = {}
        for cls in types:
            self.register(cls)

    def __repr__(self) -> str:
        return f"JSONSerializer(types={list(self._by_name)!r})"

    def register(self, cls: type) -> type:
        """Accept instances of an attrs or dataclass class (usable as a decorator)."""
        if not (attrs.has(cls) or dataclasses.is_dataclass(cls)):
            raise SerializationError(
                f"{cls.__qualname__} is neither an attrs class nor a dataclass; "
                "JSONSerializer can only register those"
            )
        name = f"{cls.__module__}:{cls.__qualname__}"
        self._by_class[cls] = name
        self._by_name[name] = cls
        return cls

    def dumps(self, value: Any, path: str = "value") -> str:
        """JSON text for ``value``.

        Raises:
            SerializationError: a value inside is of a type this serializer does not
                store; the message gives its path (``args[1].when``).
        """
        return json.dumps(self._encode(value, path), separators=(",", ":"), allow_nan=True)

    def loads(self, text: str) -> Any:
        """The value ``dumps`` wrote."""
        try:
            return self._decode(json.loads(text))
        except DeserializationError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise DeserializationError(f"cannot read stored value {text[:80]!r}: {exc}") from exc

    def _refuse(self, value: Any, path: str) -> SerializationError:
        return SerializationError(
            f"{path}: cannot store {value!r} ({type(value).__qualname__}); JSONSerializer "
            "stores None, bool, int, float, str, list, dict, tuple, set, frozenset, datetime, "
            "date, time, timedelta, UUID, Decimal, bytes and registered attrs/dataclass "
            "types (JSONSerializer(types=[...])); or pass only ids and look objects up in "
            "the job"
        )

    def _encode(self, value: Any, path: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            if type(value) is not int and not isinstance(value, bool):
                raise self._refuse(value, path)  # an IntEnum or other int subclass
            return value
        if isinstance(value, float):
            return value
        if isinstance(value, list):
            return [self._encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value) and _TAG not in value:
                return {k: self._encode(v, f"{path}[{k!r}]") for k, v in value.items()}
            return {
                _TAG: "dict",
                "v": [
                    [self._encode(k, f"{path}.keys()"), self._encode(v, f"{path}[{k!r}]")]
                    for k, v in value.items()
                ],
            }
        if isinstance(value, tuple):
            return {
                _TAG: "tuple",
                "v": [self._encode(v, f"{path}[{i}]") for i, v in enumerate(value)],
            }
        if isinstance(value, (set, frozenset)):
            tag = "set" if isinstance(value, set) else "frozenset"
            return {_TAG: tag, "v": [self._encode(v, f"{path}{{}}") for v in value]}
        if isinstance(value, datetime):
            encoded: dict[str, Any] = {_TAG: "datetime", "v": value.isoformat()}
            key = getattr(value.tzinfo, "key", None)
            if isinstance(key, str):
                encoded["tz"] = key
            return encoded
        if isinstance(value, date):
            return {_TAG: "date", "v": value.isoformat()}
        if isinstance(value, time):
            return {_TAG: "time", "v": value.isoformat()}
        if isinstance(value, timedelta):
            return {_TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
        if isinstance(value, uuid.UUID):
            return {_TAG: "uuid", "v": str(value)}
        if isinstance(value, Decimal):
            return {_TAG: "decimal", "v": str(value)}
        if isinstance(value, (bytes, bytearray)):
            return {_TAG: "bytes", "v": base64.b64encode(bytes(value)).decode("ascii")}
        name = self._by_class.get(type(value))
        if name is not None:
            if attrs.has(type(value)):
                fields = {f.name: getattr(value, f.name) for f in attrs.fields(type(value))}
            else:
                fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return {
                _TAG: "object",
                "cls": name,
                "v": {k: self._encode(v, f"{path}.{k}") for k, v in fields.items()},
            }
        raise self._refuse(value, path)

    def _decode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self._decode(v) for v in value]
        if not isinstance(value, dict):
            return value
        tag = value.get(_TAG)
        if tag is None:
            return {k: self._decode(v) for k, v in value.items()}
        raw = value["v"]
        decoder = _DECODERS.get(tag)
        if decoder is not None:
            return decoder(self, value, raw)
        if tag == "object":
            cls = self._by_name.get(value["cls"])
            if cls is None:
                raise DeserializationError(
                    f"stored value of type {value['cls']!r}, which this JSONSerializer has "
                    "not registered (JSONSerializer(types=[...]))"
                )
            return cls(**{k: self._decode(v) for k, v in raw.items()})
        raise DeserializationError(f"stored value has an unknown tag {tag!r}")


def _decode_datetime(_: JSONSerializer, value: dict[str, Any], raw: Any) -> datetime:
    result = datetime.fromisoformat(raw)
    zone = value.get("tz")
    # The ISO text fixes the instant; the zone key gives back the ZoneInfo it was in.
    return result.astimezone(ZoneInfo(zone)) if isinstance(zone, str) else result


_DECODERS: dict[str, Callable[[JSONSerializer, dict[str, Any], Any], Any]] = {
    "dict": lambda s, _, raw: {s._decode(k): s._decode(v) for k, v in raw},
    "tuple": lambda s, _, raw: tuple(s._decode(v) for v in raw),
    "set": lambda s, _, raw: {s._decode(v) for v in raw},
    "frozenset": lambda s, _, raw: frozenset(s._decode(v) for v in raw),
    "datetime": _decode_datetime,
    "date": lambda _s, _, raw: date.fromisoformat(raw),
    "time": lambda _s, _, raw: time.fromisoformat(raw),
    "timedelta": lambda _s, _, raw: timedelta(days=raw[0], seconds=raw[1], microseconds=raw[2]),
    "uuid": lambda _s, _, raw: uuid.UUID(raw),
    "decimal": lambda _s, _, raw: Decimal(raw),
    "bytes": lambda _s, _, raw: base64.b64decode(raw),
}


class PickleSerializer:
    """Stores anything picklable (as base64 text).

    Not the default, for a reason: unpickling runs code. Whoever can write to a store
    holding pickles can run code in every scheduler that reads it. Use it only where
    everyone with write access to the store is trusted.
    """

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def __repr__(self) -> str:
        return f"PickleSerializer(protocol={self.protocol})"

    def dumps(self, value: Any, path: str = "value") -> str:
        """Base64 text of the pickle of ``value``."""
        try:
            data = pickle.dumps(value, protocol=self.protocol)
        except Exception as exc:
            raise SerializationError(f"{path}: cannot pickle {value!r}: {exc}") from exc
        return base64.b64encode(data).decode("ascii")

    def loads(self, text: str) -> Any:
        """The value ``dumps`` wrote."""
        try:
            return pickle.loads(base64.b64decode(text))
        except Exception as exc:
            raise DeserializationError(f"cannot unpickle stored value: {exc}") from exc
