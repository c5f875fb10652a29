"""Stores: where jobs and their runs are kept.

``MemoryStore`` (the default) keeps them in the process; ``SQLiteStore`` in a file on one
machine; ``PostgresStore`` and ``RedisStore`` in a server shared by many processes.
"""

from __future__ import annotations

from horae.stores.base import Lease, Release, SchedulerInfo, Store, StoreContext
from horae.stores.memory import MemoryStore
from horae.stores.postgres import PostgresStore
from horae.stores.redis import RedisStore
from horae.stores.sqlite import SQLiteStore

__all__ = [
    "Lease",
    "MemoryStore",
    "PostgresStore",
    "RedisStore",
    "Release",
    "SQLiteStore",
    "SchedulerInfo",
    "Store",
    "StoreContext",
]
