"""horae: asyncio-native job scheduling."""

from __future__ import annotations

from horae.errors import (
    ConflictingIdError,
    DeserializationError,
    ExecutorLookupError,
    HoraeError,
    InvalidCallableError,
    JobArgumentError,
    JobLookupError,
    SchedulerNotRunningError,
    SchedulerRunningError,
    SerializationError,
    StoreError,
    TriggerError,
)

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
