"""The exceptions horae raises.

Every exception derives from :class:`HoraeError`. Where a user would naturally catch a
builtin (``ValueError`` for a bad argument, ``KeyError`` for an unknown id), the horae
exception derives from that builtin too.
"""

from __future__ import annotations

__all__ = [
    "ConflictingIdError",
    "DeserializationError",
    "ExecutorLookupError",
    "HoraeError",
    "InvalidCallableError",
    "JobArgumentError",
    "JobLookupError",
    "SchedulerNotRunningError",
    "SchedulerRunningError",
    "SerializationError",
    "StoreError",
    "TriggerError",
]


class HoraeError(Exception):
    """Base class of every error horae raises."""


class _KeyErrorMessage(KeyError):
    # KeyError.__str__ shows the repr of its argument ("'no job ...'"); show the text.
    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class TriggerError(HoraeError, ValueError):
    """A trigger was given an invalid argument.

    Attributes:
        field: the name of the argument at fault (``"day_of_week"``, ``"timezone"``,
            ``"expr"`` for a whole crontab string, ``"interval"`` when the arguments are
            only wrong together).
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class JobArgumentError(HoraeError, ValueError):
    """A job option (``max_instances``, ``misfire_grace_time``, ...) has an invalid value."""


class InvalidCallableError(HoraeError, TypeError):
    """What was given as a job's callable cannot be called (or cannot be stored)."""


class JobLookupError(HoraeError, _KeyErrorMessage):
    """No job has the given id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class ConflictingIdError(HoraeError, _KeyErrorMessage):
    """A job with the given id exists already (pass ``replace_existing=True`` to replace it)."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"a job with id {job_id!r} exists already; "
            "pass replace_existing=True to replace it or choose another id"
        )
        self.job_id = job_id


class ExecutorLookupError(HoraeError, _KeyErrorMessage):
    """No executor has the given name."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(
            f"no executor named {name!r}; this scheduler has {', '.join(map(repr, known))}"
        )
        self.name = name


class SchedulerNotRunningError(HoraeError, RuntimeError):
    """The operation needs a running scheduler."""


class SchedulerRunningError(HoraeError, RuntimeError):
    """The scheduler is running already (``start()`` was called twice)."""


class SerializationError(HoraeError, ValueError):
    """A job's arguments or result cannot be stored with the store's serializer."""


class DeserializationError(HoraeError, ValueError):
    """Something a store holds cannot be read back (a corrupted row, a deleted callable)."""


class StoreError(HoraeError):
    """The job store failed (lost connection, server error)."""
