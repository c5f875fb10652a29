"""Checks of the constructor options every store shares."""

from __future__ import annotations

from typing import Any

from horae.errors import JobArgumentError
from horae.serializers import JSONSerializer, Serializer


def run_retention(value: Any) -> int:
    """``run_retention`` as given, if it is a whole number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise JobArgumentError(f"run_retention: {value!r} is not allowed; give a whole number >= 0")
    return value


def serializer(value: Any) -> Serializer:
    """The serializer given, or a new :class:`JSONSerializer` for ``None``."""
    if value is None:
        return JSONSerializer()
    if not isinstance(value, Serializer):
        raise JobArgumentError(
            f"serializer: {value!r} is not a serializer (JSONSerializer, PickleSerializer "
            "or an object with dumps() and loads())"
        )
    return value
