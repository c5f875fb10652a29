"""Stores: where jobs and their runs are kept."""

from __future__ import annotations

from horae.stores.base import Lease, Release, Store, StoreContext
from horae.stores.memory import MemoryStore

__all__ = ["Lease", "MemoryStore", "Release", "Store", "StoreContext"]
