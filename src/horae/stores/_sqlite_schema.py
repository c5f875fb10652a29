"""The SQLite store's file layout: its tables, their upgrades, and how values map to rows.

See ``docs/store-sqlite.md`` for the layout in prose and the upgrade path.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from horae.errors import StoreError
from horae.stores._codec import RunRecord
from horae.stores.base import SchedulerInfo

logger = logging.getLogger(__name__)

#: Version of the tables' layout, kept in ``meta``; see docs/store-sqlite.md for upgrades.
SCHEMA_VERSION = 3

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)

# Instants are whole microseconds since the epoch (UTC) in INTEGER columns: exact (no
# float rounding) and ordered, so the due-job query is a range scan of one index.
#
# jobs.due is when the job next needs a scheduler's attention: its next run time while
# no one holds it, the lease's expiry while someone does, NULL when paused. Acquiring
# is then "due <= now, earliest first" on one index, and the earliest due is what a
# scheduler sleeps until, which wakes it to take over a crashed scheduler's jobs.
#
# A job *held* until one of its runs ends (Release.hold_while_running) is the one case
# of due NULL with a next_run_time: neither acquiring nor next_run_time() sees it, and
# the run that ends sets due back to next_run_time. No other write leaves that pair
# (a leased job's due is its lease's expiry, a paused job has no next_run_time), so
# the hold needs no column of its own.
#
# jobs.run_count (version 3) is how many runs of the job were started so far
# (Lease.run_count); it goes with the row when the job is removed.
#
# runs.seq is NULL while a run is in flight and, once it finished, its place in the
# job's history (1, 2, 3, ...), which makes retention a range delete.
#
# runs.lease_holder and runs.lease_expires (version 2) say which scheduler holds an
# in-flight run and until when; both are NULL once the run finished. The partial index
# runs_lease therefore holds the in-flight runs only, and claiming expired ones is a
# range scan of it, whatever the size of the history.
#
# schedulers is the register of the schedulers sharing the file (Store.heartbeat), one
# row per scheduler id, replaced by each heartbeat; the lease counts of get_schedulers
# are read from jobs and runs, never stored. It came within version 3 and does not bump
# it, as the events table did not: it is created on start by IF NOT EXISTS, so a file of
# an older version 3 horae gains it without an upgrade step, and that horae keeps
# working on a file that has it (it never reads it, and its start creates only its own
# tables). A bump would make every older process refuse the file for a table it does
# not need. Its writes never touch meta.changes: a heartbeat is no news to the pollers.
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)"
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        next_run_time INTEGER,
        due INTEGER,
        payload TEXT NOT NULL,
        lease_holder TEXT,
        lease_expires INTEGER,
        lease_token INTEGER NOT NULL DEFAULT 0,
        run_count INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_due ON jobs (due)",
    """CREATE TABLE IF NOT EXISTS runs (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        seq INTEGER,
        scheduled_time INTEGER NOT NULL,
        started_at INTEGER,
        finished_at INTEGER,
        outcome TEXT,
        result TEXT,
        error TEXT,
        scheduler_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        coalesced INTEGER NOT NULL,
        lease_holder TEXT,
        lease_expires INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS runs_job ON runs (job_id, seq)",
    # Created after the version 2 upgrade of an older file (below) has added the column.
    "CREATE INDEX IF NOT EXISTS runs_lease ON runs (lease_expires) WHERE lease_expires IS NOT NULL",
    # Events for the other schedulers (broadcast): one row per batch, read by their
    # pollers, trimmed by the writers. Added after version 1 first shipped: created on
    # start by IF NOT EXISTS, and invisible to readers that do not know it.
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        sender TEXT NOT NULL,
        created INTEGER NOT NULL,
        message TEXT NOT NULL
    )""",
    # The register of schedulers (see above): added within version 3.
    """CREATE TABLE IF NOT EXISTS schedulers (
        id TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started_at INTEGER NOT NULL,
        heartbeat_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        state TEXT NOT NULL,
        version TEXT NOT NULL
    )""",
)
# The statements that take a file from the version before to the version of the key.
_UPGRADES: dict[int, tuple[str, ...]] = {
    # Leases of in-flight runs. Runs in flight in a version 1 file were left by
    # schedulers that could not renew them: their leases are expired already (at the
    # epoch), so the first claim_expired_runs after the upgrade takes them over. They
    # stay held by the scheduler that ran them until then.
    2: (
        "ALTER TABLE runs ADD COLUMN lease_holder TEXT",
        "ALTER TABLE runs ADD COLUMN lease_expires INTEGER",
        "UPDATE runs SET lease_holder = scheduler_id, lease_expires = 0 WHERE seq IS NULL",
    ),
    # Runs started per job (max_runs): unknown for the runs of older versions, so
    # existing jobs count from 0. No job of an older file is held.
    3: ("ALTER TABLE jobs ADD COLUMN run_count INTEGER NOT NULL DEFAULT 0",),
}

RUN_COLUMNS = (
    "id, job_id, seq, scheduled_time, started_at, finished_at, outcome, result, error, "
    "scheduler_id, attempt, coalesced"
)
#: A finished run (its lease columns are NULL), replacing the in-flight row of that id.
INSERT_FINISHED = f"INSERT OR REPLACE INTO runs ({RUN_COLUMNS}) VALUES ({','.join('?' * 12)})"
#: A run going in flight, held by a scheduler until an instant.
INSERT_STARTED = (
    f"INSERT OR IGNORE INTO runs ({RUN_COLUMNS}, lease_holder, lease_expires) "
    f"VALUES ({','.join('?' * 14)})"
)
NEXT_SEQ = "SELECT COALESCE(MAX(seq), 0) + 1 FROM runs WHERE job_id = ?"
#: How a job's runs in flight are listed, latest scheduled first; ties go to the run
#: written first (rowids grow), as in the memory store. get_runs and get_latest_runs
#: share it, so that they agree on which run is the latest.
IN_FLIGHT_ORDER = "scheduled_time DESC, rowid"

#: Every job id, sorted: a walk of the primary key's index, which never reads a payload
#: (unreadable jobs are listed too). BINARY collation orders UTF-8 as Python orders str.
JOB_IDS = "SELECT id FROM jobs ORDER BY id"
#: The runs in flight of every job (removed jobs' too), by scheduled time then id, up to
#: a number. lease_expires is NOT NULL exactly while a run is in flight: that term lets
#: the planner walk the partial index runs_lease (the runs in flight) rather than the
#: whole history; the few rows are then sorted.
RUNS_IN_FLIGHT = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE lease_expires IS NOT NULL AND seq IS NULL "
    "ORDER BY scheduled_time, id LIMIT ?"
)


def latest_runs(count: int) -> str:
    """The statement reading the latest run of each of ``count`` job ids (bound in order).

    Per id, the in-flight run that comes first by :data:`IN_FLIGHT_ORDER`, else the
    finished run of the highest seq: two lookups in the runs_job index (job_id, seq), so
    the cost grows with the ids asked for, not with the size of the history. Ids with no
    run yield no row; each row is one of :data:`RUN_COLUMNS`.
    """
    values = ",".join(["(?)"] * count)
    return (
        f"WITH wanted (job_id) AS (VALUES {values}) "
        f"SELECT {RUN_COLUMNS} FROM runs WHERE rowid IN (SELECT COALESCE("
        "(SELECT rowid FROM runs WHERE job_id = wanted.job_id AND seq IS NULL "
        f"ORDER BY {IN_FLIGHT_ORDER} LIMIT 1), "
        "(SELECT rowid FROM runs WHERE job_id = wanted.job_id AND seq IS NOT NULL "
        "ORDER BY seq DESC LIMIT 1)) FROM wanted)"
    )


#: A heartbeat: the scheduler's record, replacing the one of that id.
HEARTBEAT = (
    "INSERT OR REPLACE INTO schedulers "
    "(id, host, pid, started_at, heartbeat_at, expires_at, state, version) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
#: The records that went stale before an instant (SCHEDULER_RECORD_KEEP ago).
DROP_STALE_SCHEDULERS = "DELETE FROM schedulers WHERE expires_at < ?"
#: Every record by id, with the job leases and in-flight runs its scheduler holds at an
#: instant (given twice). Each count is one walk of its table grouped by holder, not one
#: per scheduler: jobs.lease_holder has no index, which would cost every acquire and
#: release; the runs' walk is one of the in-flight runs (the partial index runs_lease).
#: A lease that expired keeps its holder until someone takes the job or run over, hence
#: the expiry test. BINARY collation orders UTF-8 as Python orders str.
SCHEDULERS = (
    "WITH held_jobs (holder, n) AS (SELECT lease_holder, COUNT(*) FROM jobs "
    "WHERE lease_expires > ? GROUP BY lease_holder), "
    "held_runs (holder, n) AS (SELECT lease_holder, COUNT(*) FROM runs "
    "WHERE lease_expires > ? GROUP BY lease_holder) "
    "SELECT s.id, s.host, s.pid, s.started_at, s.heartbeat_at, s.expires_at, s.state, "
    "s.version, COALESCE(held_jobs.n, 0), COALESCE(held_runs.n, 0) FROM schedulers AS s "
    "LEFT JOIN held_jobs ON held_jobs.holder = s.id "
    "LEFT JOIN held_runs ON held_runs.holder = s.id ORDER BY s.id"
)


def prepare(conn: sqlite3.Connection, path: str) -> int:
    """Create the tables, or upgrade them one version at a time; returns meta.changes.

    Runs inside the caller's write transaction: processes starting at once create or
    upgrade the file once, and every process sees either the old layout or the new one.

    Raises:
        StoreError: the file holds a layout newer than this horae knows.
    """
    conn.execute(_META)
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None:
        version = int(row[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path!r} holds horae tables of schema version {version}, newer "
                f"than this horae's ({SCHEMA_VERSION}); upgrade horae"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _UPGRADES[step]:
                conn.execute(statement)
        if version < SCHEMA_VERSION:
            logger.info(
                "%r: upgraded the horae tables from schema version %d to %d",
                path,
                version,
                SCHEMA_VERSION,
            )
    # On a new file this creates everything; on an upgraded one what the upgrade needs
    # to exist beside its new columns (and the events table older files lack).
    for statement in _SCHEMA:
        conn.execute(statement)
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES "
        "('schema_version', ?), ('changes', 0), ('lease_token', 0)",
        (SCHEMA_VERSION,),
    )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION,))
    (changes,) = conn.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()
    return int(changes)


def us(value: datetime) -> int:
    """An instant as whole microseconds since the epoch."""
    return (value - _EPOCH) // _MICROSECOND


def us_or_none(value: datetime | None) -> int | None:
    """:func:`us`, or ``None``."""
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def instant(value: int | None) -> datetime | None:
    """The UTC instant of microseconds since the epoch, or ``None``."""
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def run_row(record: RunRecord, seq: int | None) -> tuple[Any, ...]:
    """The values of :data:`RUN_COLUMNS` for a run."""
    return (
        record.id,
        record.job_id,
        seq,
        us(record.scheduled_time),
        us_or_none(record.started_at),
        us_or_none(record.finished_at),
        record.outcome,
        record.result,
        record.error,
        record.scheduler_id,
        record.attempt,
        record.coalesced,
    )


def started_row(record: RunRecord, holder: str, expires: int) -> tuple[Any, ...]:
    """The values of :data:`INSERT_STARTED` for a run going in flight."""
    return (*run_row(record, None), holder, expires)


def run_record(row: Sequence[Any]) -> RunRecord:
    """The run a row of :data:`RUN_COLUMNS` holds."""
    (
        run_id,
        job_id,
        _,
        scheduled,
        started,
        finished,
        outcome,
        result,
        error,
        scheduler_id,
        attempt,
        coalesced,
    ) = row
    return RunRecord(
        id=run_id,
        job_id=job_id,
        scheduled_time=_EPOCH + timedelta(microseconds=scheduled),
        started_at=instant(started),
        finished_at=instant(finished),
        outcome=outcome,
        result=result,
        error=error,
        scheduler_id=scheduler_id,
        attempt=attempt,
        coalesced=coalesced,
    )


def scheduler_row(info: SchedulerInfo) -> tuple[Any, ...]:
    """The values of :data:`HEARTBEAT` for a scheduler's record (its lease counts are
    not stored)."""
    return (
        info.id,
        info.host,
        info.pid,
        us(info.started_at),
        us(info.heartbeat_at),
        us(info.expires_at),
        info.state,
        info.version,
    )


def scheduler_info(row: Sequence[Any]) -> SchedulerInfo:
    """The record a row of :data:`SCHEDULERS` holds, with its lease counts."""
    sid, host, pid, started, beat, expires, state, version, job_leases, run_leases = row
    return SchedulerInfo(
        id=sid,
        host=host,
        pid=pid,
        started_at=_EPOCH + timedelta(microseconds=started),
        heartbeat_at=_EPOCH + timedelta(microseconds=beat),
        expires_at=_EPOCH + timedelta(microseconds=expires),
        state=state,
        version=version,
        job_leases=job_leases,
        run_leases=run_leases,
    )
