"""The SQLite store's target: a database file in a fresh temporary directory."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio.to_thread

from horae.stores.base import Store
from horae.stores.sqlite import SQLiteStore


@asynccontextmanager
async def target() -> AsyncIterator[Callable[[], Store]]:
    directory = Path(tempfile.mkdtemp(prefix="horae-sqlite-"))
    try:
        yield lambda: SQLiteStore(directory / "jobs.sqlite")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def corrupt(store: Store, job_id: str) -> None:
    """Write a payload that is not JSON into the job's row, as a broken disk or hand would."""
    assert isinstance(store, SQLiteStore)

    def write() -> None:
        conn = sqlite3.connect(store.path, timeout=5, isolation_level=None)
        try:
            conn.execute("UPDATE jobs SET payload = '{not json' WHERE id = ?", (job_id,))
        finally:
            conn.close()

    await anyio.to_thread.run_sync(write)
