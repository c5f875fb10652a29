"""The SQLite store: jobs that survive restarts, shared by the processes of one machine.

Every statement runs in a worker thread (``anyio.to_thread.run_sync`` behind a capacity
limiter of 1, so one statement at a time per store and never on the event loop). Writes
are ``BEGIN IMMEDIATE`` transactions: SQLite lets one writer at a time into a database
file, across processes, so acquiring due jobs is exclusive without any row locking. The
file is in WAL mode, so readers never wait for the writer; writers wait up to ``timeout``
seconds for each other (SQLite's busy timeout).

See ``docs/store-sqlite.md`` for the schema, the upgrade path and the limits.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from horae._event_codec import pack, unpack
from horae.errors import (
    ConflictingIdError,
    DeserializationError,
    JobArgumentError,
    JobLookupError,
    StoreError,
)
from horae.events import Event
from horae.jobs import Job, Run
from horae.serializers import Serializer
from horae.stores import _options
from horae.stores._codec import LeftOut, RunRecord, decode_job, decode_run, encode_job, encode_run
from horae.stores._sqlite_schema import (
    DROP_STALE_SCHEDULERS,
    HEARTBEAT,
    IN_FLIGHT_ORDER,
    INSERT_FINISHED,
    INSERT_STARTED,
    JOB_IDS,
    NEXT_SEQ,
    RUN_COLUMNS,
    RUNS_IN_FLIGHT,
    SCHEDULERS,
    SCHEMA_VERSION,
    instant,
    latest_runs,
    prepare,
    run_record,
    run_row,
    scheduler_info,
    scheduler_row,
    started_row,
    us,
    us_or_none,
)
from horae.stores.base import (
    SCHEDULER_RECORD_KEEP,
    Lease,
    Release,
    SchedulerInfo,
    StoreContext,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# SQLite allows 32766 host parameters per statement (since 3.32); stay well below.
_CHUNK = 500

# Rows of the events table are kept for a minute, and at most this many: a poller
# reads them within its poll_interval.
_EVENTS_KEEP_ROWS = 1000
_EVENTS_KEEP_US = 60_000_000

# A job's runs in flight: a walk of the runs_job index (job_id, seq) at seq NULL.
_COUNT_IN_FLIGHT = "SELECT COUNT(*) FROM runs WHERE job_id = ? AND seq IS NULL"

# The run's row (in flight: seq NULL) and whether its job is held (see _sqlite_schema),
# in one statement: finishing a run of a job that is not held costs no extra one.
_FINISHING = (
    "SELECT runs.seq, jobs.due IS NULL AND jobs.next_run_time IS NOT NULL "
    "FROM runs LEFT JOIN jobs ON jobs.id = runs.job_id WHERE runs.id = ?"
)

# A job with nothing left to happen: no next run time (so not held), no lease, no run
# in flight (see Store.finish_run's remove_finished_job).
_REMOVE_IF_IDLE = (
    "DELETE FROM jobs WHERE id = ? AND next_run_time IS NULL AND lease_holder IS NULL "
    "AND NOT EXISTS (SELECT 1 FROM runs WHERE job_id = ? AND seq IS NULL)"
)


class SQLiteStore:
    """Keeps jobs and their run history in a SQLite database file.

    The embedded persistent store: nothing to install, jobs survive restarts, and several
    scheduler processes *on one machine* may share the file (each due job still runs
    once). For processes on several machines, use ``PostgresStore`` or ``RedisStore``:
    SQLite's locking is not reliable over network file systems.

    Example::

        from horae import AsyncScheduler
        from horae.stores.sqlite import SQLiteStore

        async with AsyncScheduler(SQLiteStore("jobs.sqlite")) as scheduler:
            await scheduler.add_job(tick, "interval", seconds=5, id="tick")

    Schedulers in other processes sharing the file are noticed by polling a change counter
    every ``poll_interval`` seconds (SQLite has no notifications); schedulers in this
    process are woken at once.

    The schedulers sharing the file list themselves in its ``schedulers`` table
    (:meth:`heartbeat`, :meth:`get_schedulers`); a heartbeat wakes no one's poller.

    Args:
        path: the database file (created if missing; its directory must exist).
            ``":memory:"`` gives a private database that lives until :meth:`stop`:
            use ``MemoryStore`` instead.
        serializer: how arguments and results are stored (``JSONSerializer()`` by
            default).
        run_retention: how many finished runs to keep per job.
        timeout: seconds a write waits for another process's write to end before
            failing (SQLite's busy timeout).
        poll_interval: seconds between looks for changes made by other processes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        serializer: Serializer | None = None,
        run_retention: int = 100,
        timeout: float = 5.0,
        poll_interval: float = 1.0,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise JobArgumentError(f"path: {path!r} is not a file path; give a str or pathlib.Path")
        for name, value in (("timeout", timeout), ("poll_interval", poll_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise JobArgumentError(f"{name}: {value!r} is not allowed; give seconds > 0")
        self.path = os.fspath(path)
        self._serializer = _options.serializer(serializer)
        self._left_out = LeftOut(logger)
        self._run_retention = _options.run_retention(run_retention)
        self._timeout = float(timeout)
        self._poll_interval = float(poll_interval)
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._context: StoreContext | None = None
        self._poller: threading.Thread | None = None
        self._stop_polling = threading.Event()
        # The highest value of meta.changes this instance wrote or saw (see _bump).
        self._seen_changes = -1
        self._seen_lock = threading.Lock()
        self._bumping = False
        self._finishing: list[_Finishing] = []
        self._flushing = False
        # Event rows carry this instance's token, so that its poller skips its own.
        self._events_sender = uuid.uuid4().hex
        # The id of the last event row the poller read (or that existed at start).
        self._events_seen = 0

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    # ---------------------------------------------------------------- plumbing

    def _connect(self) -> sqlite3.Connection:
        try:
            # check_same_thread=False: the pool thread that runs a call may differ from
            # call to call; the limiter guarantees one call at a time.
            conn = sqlite3.connect(
                self.path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(
                f"cannot open the SQLite database {self.path!r} ({exc}); check that its "
                "directory exists and is writable"
            ) from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL loses no integrity on power loss, only the last commits.
            conn.execute("PRAGMA synchronous=NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        def run() -> T:
            conn = self._conn
            if conn is None:
                raise StoreError(
                    f"{self!r} is not started; use it through a scheduler, or await "
                    "store.start(context) first"
                )
            return func(conn, *args)

        # Not cancellable (the default): a statement under way finishes and its
        # transaction commits or rolls back before the caller sees the cancellation.
        return await anyio.to_thread.run_sync(run, limiter=self._limiter)

    @contextmanager
    def _writing(self, conn: sqlite3.Connection) -> Iterator[None]:
        # IMMEDIATE takes the database's write lock up front (waiting up to the busy
        # timeout), so two processes can never both read "due and free" and lease one job.
        conn.execute("BEGIN IMMEDIATE")
        self._bumping = False
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if self._bumping:
                # The counter this instance recorded as its own was not written: forget
                # it, or another writer's change to the same value would go unnoticed.
                with self._seen_lock:
                    self._seen_changes = -1
            raise

    @contextmanager
    def _reading(self, conn: sqlite3.Connection) -> Iterator[None]:
        # A deferred transaction that only reads: in WAL mode its statements all see one
        # snapshot, and it neither waits for a writer nor holds one up.
        conn.execute("BEGIN")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _bump(self, conn: sqlite3.Connection) -> bool:
        """Count a change that other schedulers should look at (in a write transaction).

        Returns whether the counter shows a change by another writer that this instance
        has not seen yet (the poller may not have noticed it).
        """
        old: int = conn.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()[0]
        conn.execute("UPDATE meta SET value = ? WHERE key = 'changes'", (old + 1,))
        self._bumping = True
        # Recorded before the commit, under the lock the poller takes: the poller never
        # sees this change as someone else's. The counter only grows, so a value above
        # the recorded one always is someone else's.
        with self._seen_lock:
            foreign = old > self._seen_changes
            self._seen_changes = old + 1
        return foreign

    def _bumped(self, foreign: bool) -> None:
        if foreign and self._context is not None:
            self._context.wakeup()

    # --------------------------------------------------------------- lifecycle

    async def start(self, context: StoreContext) -> None:
        """Open the database, create the tables if missing and watch for other writers."""
        if self._conn is not None:
            raise StoreError(f"{self!r} is started already; stop it before starting it again")
        self._limiter = anyio.CapacityLimiter(1)
        self._conn = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
        try:
            self._seen_changes = await self._call(self._create_schema)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._close()
            raise
        self._context = context
        if self.path not in (":memory:", ""):
            self._events_seen = await self._call(
                lambda conn: conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
            )
            self._stop_polling = threading.Event()
            self._poller = threading.Thread(
                target=self._poll,
                args=(context, anyio.lowlevel.current_token(), self._stop_polling),
                name=f"horae sqlite poller {self.path}",
                daemon=True,
            )
            self._poller.start()

    def _create_schema(self, conn: sqlite3.Connection) -> int:
        # One write transaction: processes starting at once create (or upgrade) the
        # tables once.
        with self._writing(conn):
            return prepare(conn, self.path)

    async def stop(self) -> None:
        """Give back the job leases this scheduler still holds, stop watching for other
        writers and close the database; the jobs stay in it."""
        with anyio.CancelScope(shield=True):
            context, self._context = self._context, None
            if context is not None and self._conn is not None:
                await self._drop_leases(context.scheduler_id)
            poller, self._poller = self._poller, None
            if poller is not None:
                self._stop_polling.set()
                # Joined off the event loop: the poller may be waiting for the loop to
                # run a wake-up.
                await anyio.to_thread.run_sync(poller.join)
            await self._close()

    async def _drop_leases(self, scheduler_id: str) -> None:
        # A job still leased here (a release that failed, a stop in the middle of a
        # batch) is due again at once for the others, rather than at its lease's expiry.
        # Its in-flight runs keep their leases: whoever claims them after expiry decides
        # whether they were abandoned.
        def drop(conn: sqlite3.Connection) -> None:
            with self._writing(conn):
                dropped = conn.execute(
                    "UPDATE jobs SET lease_holder = NULL, lease_expires = NULL, "
                    "due = next_run_time WHERE lease_holder = ?",
                    (scheduler_id,),
                ).rowcount
                if dropped:
                    self._bump(conn)

        try:
            await self._call(drop)
        except (sqlite3.Error, StoreError) as exc:
            logger.warning(
                "%r: could not give back leases at stop (they expire by themselves): %s",
                self,
                exc,
            )

    async def _close(self) -> None:
        def close() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

        await anyio.to_thread.run_sync(close, limiter=self._limiter)

    def _poll(
        self,
        context: StoreContext,
        token: anyio.lowlevel.EventLoopToken,
        stop: threading.Event,
    ) -> None:
        # A thread of its own, owned by this store (started in start(), joined in stop()):
        # SQLite has no notifications, so another process's change is seen by reading the
        # change counter now and then. A connection of its own: reading in WAL mode never
        # waits for writers.
        conn: sqlite3.Connection | None = None
        failing = False
        try:
            while not stop.wait(self._poll_interval):
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=self._timeout)
                    row = conn.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()
                    events = self._read_events(conn)
                except sqlite3.Error as exc:
                    if not failing:
                        logger.warning(
                            "%r: cannot look for changes by other processes (%s); "
                            "trying again every %.1f s",
                            self,
                            exc,
                            self._poll_interval,
                        )
                        failing = True
                    continue
                if failing:
                    logger.warning("%r: looking for changes by other processes again", self)
                    failing = False
                changes = int(row[0]) if row is not None else 0
                with self._seen_lock:
                    foreign = changes > self._seen_changes
                    if foreign:
                        self._seen_changes = changes
                if foreign or events:
                    try:
                        anyio.from_thread.run_sync(_notify, context, foreign, events, token=token)
                    except RuntimeError:
                        return  # the event loop is gone
        finally:
            if conn is not None:
                conn.close()

    def _read_events(self, conn: sqlite3.Connection) -> list[Event]:
        # In the poller thread, on the poller's connection.
        rows = conn.execute(
            "SELECT id, sender, message FROM events WHERE id > ? ORDER BY id",
            (self._events_seen,),
        ).fetchall()
        if not rows:
            return []
        missed = rows[0][0] - self._events_seen - 1
        if missed > 0 and self._events_seen:
            logger.warning(
                "%r: %d batches of other schedulers' events were trimmed before this "
                "scheduler read them",
                self,
                missed,
            )
        self._events_seen = rows[-1][0]
        events: list[Event] = []
        for _, sender, message in rows:
            if sender != self._events_sender:
                events.extend(unpack(message, self._serializer)[1])
        return events

    async def broadcast(self, events: Sequence[Event]) -> None:
        """Send events to the other schedulers: one row per batch in the ``events``
        table, which their pollers read every ``poll_interval``. Rows older than a
        minute (or beyond the last 1,000) are deleted by the same transaction."""
        if self.path in (":memory:", ""):
            return  # a private database: nobody else to tell
        messages = pack(self._events_sender, events, self._serializer)
        if messages:
            await self._call(self._write_events, messages[0])

    def _write_events(self, conn: sqlite3.Connection, message: str) -> None:
        now = time.time_ns() // 1000
        with self._writing(conn):
            cursor = conn.execute(
                "INSERT INTO events (sender, created, message) VALUES (?, ?, ?)",
                (self._events_sender, now, message),
            )
            last = cursor.lastrowid or 0
            conn.execute(
                "DELETE FROM events WHERE id <= ? OR created < ?",
                (last - _EVENTS_KEEP_ROWS, now - _EVENTS_KEEP_US),
            )

    # -------------------------------------------------------------------- jobs

    async def add_jobs(self, jobs: Sequence[Job], *, replace: bool) -> None:
        """Add jobs in one transaction; an existing id is replaced only with ``replace``."""
        rows = []
        seen: set[str] = set()
        for job in jobs:
            if not replace and job.id in seen:
                raise ConflictingIdError(job.id)
            seen.add(job.id)
            next_run = us_or_none(job.next_run_time)
            rows.append((job.id, next_run, next_run, encode_job(job, self._serializer)))
        if rows:
            self._bumped(await self._call(self._add_jobs, rows, replace))

    def _add_jobs(
        self, conn: sqlite3.Connection, rows: list[tuple[Any, ...]], replace: bool
    ) -> bool:
        with self._writing(conn):
            if replace:
                # A job leased right now keeps its lease (due = the lease's expiry); the
                # release then sees the new next run time and keeps it.
                conn.executemany(
                    "INSERT INTO jobs (id, next_run_time, due, payload) VALUES (?,?,?,?) "
                    "ON CONFLICT (id) DO UPDATE SET next_run_time = excluded.next_run_time, "
                    "payload = excluded.payload, "
                    "due = CASE WHEN lease_holder IS NULL THEN excluded.due ELSE due END",
                    rows,
                )
            else:
                for start in range(0, len(rows), _CHUNK):
                    ids = [row[0] for row in rows[start : start + _CHUNK]]
                    marks = ",".join("?" * len(ids))
                    taken = conn.execute(
                        f"SELECT id FROM jobs WHERE id IN ({marks}) LIMIT 1", ids
                    ).fetchone()
                    if taken is not None:
                        raise ConflictingIdError(taken[0])
                conn.executemany(
                    "INSERT INTO jobs (id, next_run_time, due, payload) VALUES (?,?,?,?)", rows
                )
            return self._bump(conn)

    async def get_job(self, job_id: str) -> Job:
        """The job with that id.

        Raises:
            JobLookupError: no job has that id.
            DeserializationError: its stored row cannot be read back.
        """
        row = await self._call(
            lambda conn: conn.execute(
                "SELECT next_run_time, payload FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        )
        if row is None:
            raise JobLookupError(job_id)
        return decode_job(job_id, instant(row[0]), row[1], self._serializer)

    async def get_jobs(self) -> list[Job]:
        """Every readable job, by next run time, paused jobs last; unreadable ones are
        logged and left in place."""
        return await self._call(self._get_jobs)

    def _get_jobs(self, conn: sqlite3.Connection) -> list[Job]:
        jobs = []
        for job_id, next_run, payload in conn.execute(
            "SELECT id, next_run_time, payload FROM jobs "
            "ORDER BY next_run_time IS NULL, next_run_time, id"
        ):
            try:
                jobs.append(decode_job(job_id, instant(next_run), payload, self._serializer))
            except DeserializationError as exc:
                self._left_out.report(self, job_id, exc)
        return jobs

    async def get_job_ids(self) -> list[str]:
        """Every job id, sorted, unreadable jobs' too: one read of the ids' index, which
        never reads a payload."""
        rows = await self._call(lambda conn: conn.execute(JOB_IDS).fetchall())
        return [job_id for (job_id,) in rows]

    async def update_job(self, job: Job) -> None:
        """Replace the stored job of the same id.

        Raises:
            JobLookupError: no job has that id.
        """
        next_run = us_or_none(job.next_run_time)
        row = (encode_job(job, self._serializer), next_run, next_run, job.id)
        self._bumped(await self._call(self._update_job, row))

    def _update_job(self, conn: sqlite3.Connection, row: tuple[Any, ...]) -> bool:
        with self._writing(conn):
            cursor = conn.execute(
                "UPDATE jobs SET payload = ?, next_run_time = ?, "
                "due = CASE WHEN lease_holder IS NULL THEN ? ELSE due END WHERE id = ?",
                row,
            )
            if cursor.rowcount == 0:
                raise JobLookupError(row[-1])
            return self._bump(conn)

    async def remove_job(self, job_id: str) -> None:
        """Remove a job (its run history stays readable).

        Raises:
            JobLookupError: no job has that id.
        """

        def remove(conn: sqlite3.Connection) -> bool:
            with self._writing(conn):
                if conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 0:
                    raise JobLookupError(job_id)
                return self._bump(conn)

        self._bumped(await self._call(remove))

    async def remove_all_jobs(self) -> None:
        """Remove every job."""

        def remove_all(conn: sqlite3.Connection) -> bool:
            with self._writing(conn):
                conn.execute("DELETE FROM jobs")
                return self._bump(conn)

        self._bumped(await self._call(remove_all))

    async def next_run_time(self) -> datetime | None:
        """The earliest next run time of a job neither leased nor held, or the lease expiry
        of one leased."""
        row = await self._call(lambda conn: conn.execute("SELECT MIN(due) FROM jobs").fetchone())
        return instant(row[0])

    # ------------------------------------------------------------------ leases

    async def acquire_jobs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> list[Lease]:
        """Lease up to ``limit`` due jobs, earliest first, in one write transaction."""
        if limit < 1:
            return []
        expires = now + timedelta(seconds=lease_duration)
        return await self._call(self._acquire, scheduler_id, us(now), limit, expires, us(expires))

    def _acquire(
        self,
        conn: sqlite3.Connection,
        scheduler_id: str,
        now: int,
        limit: int,
        expires: datetime,
        expires_us: int,
    ) -> list[Lease]:
        taken: list[tuple[str, int, str, int, int]] = []
        with self._writing(conn):
            (token,) = conn.execute("SELECT value FROM meta WHERE key = 'lease_token'").fetchone()
            while len(taken) < limit:
                rows = conn.execute(
                    "SELECT id, next_run_time, payload, run_count FROM jobs WHERE due <= ? "
                    "ORDER BY due LIMIT ?",
                    (now, limit - len(taken)),
                ).fetchall()
                # An expired lease of a job paused or rescheduled meanwhile: not due any
                # more, so it only loses its lease.
                idle = [
                    (job_id,)
                    for job_id, next_run, _, _ in rows
                    if next_run is None or next_run > now
                ]
                leases = []
                for job_id, next_run, payload, run_count in rows:
                    if next_run is not None and next_run <= now:
                        token += 1
                        leases.append((scheduler_id, expires_us, token, expires_us, job_id))
                        taken.append((job_id, next_run, payload, token, run_count))
                conn.executemany(
                    "UPDATE jobs SET lease_holder = ?, lease_expires = ?, lease_token = ?, "
                    "due = ? WHERE id = ?",
                    leases,
                )
                if not idle:
                    break
                conn.executemany(
                    "UPDATE jobs SET lease_holder = NULL, lease_expires = NULL, "
                    "due = next_run_time WHERE id = ?",
                    idle,
                )
            if not taken:
                return []
            conn.execute("UPDATE meta SET value = ? WHERE key = 'lease_token'", (token,))
            running: dict[str, int] = {}
            for start in range(0, len(taken), _CHUNK):
                ids = [t[0] for t in taken[start : start + _CHUNK]]
                running.update(
                    conn.execute(
                        f"SELECT job_id, COUNT(*) FROM runs WHERE seq IS NULL AND job_id IN "
                        f"({','.join('?' * len(ids))}) GROUP BY job_id",
                        ids,
                    ).fetchall()
                )
        # Decoded after the commit: other processes need not wait for it.
        result = []
        for job_id, next_run, payload, job_token, run_count in taken:
            job: Job | None = None
            error: Exception | None = None
            try:
                job = decode_job(job_id, instant(next_run), payload, self._serializer)
            except DeserializationError as exc:
                error = exc
            result.append(
                Lease(
                    job_id=job_id,
                    job=job,
                    error=error,
                    scheduler_id=scheduler_id,
                    expires_at=expires,
                    token=job_token,
                    running=running.get(job_id, 0),
                    run_count=run_count,
                )
            )
        return result

    async def release_jobs(self, scheduler_id: str, releases: Sequence[Release]) -> set[str]:
        """Give leased jobs back with their next run times, in one write transaction.

        A release with ``hold_while_running`` counts its job's runs in flight in that
        transaction, which no ``finish_run`` of any process can interleave with, and
        holds the job (``due`` NULL, its next run time kept) when they fill its slots.
        """
        if not releases:
            return set()
        serializer = self._serializer
        work = [
            (
                release,
                [encode_run(run, serializer) for run in release.started],
                [encode_run(run, serializer) for run in release.finished],
            )
            for release in releases
        ]
        rejected, foreign = await self._call(self._release, scheduler_id, work)
        self._bumped(foreign)
        return rejected

    def _release(
        self,
        conn: sqlite3.Connection,
        scheduler_id: str,
        work: list[tuple[Release, list[RunRecord], list[RunRecord]]],
    ) -> tuple[set[str], bool]:
        rejected: set[str] = set()
        earlier = False
        with self._writing(conn):
            for release, started, finished in work:
                lease = release.lease
                job_id = lease.job_id
                row = conn.execute(
                    "SELECT next_run_time, lease_holder, lease_token, lease_expires FROM jobs "
                    "WHERE id = ?",
                    (job_id,),
                ).fetchone()
                if row is None or row[1] is None or row[2] != lease.token:
                    # The lease expired and someone else took the job (or took it and
                    # gave it back, or removed it), or the job was removed meanwhile:
                    # this scheduler's view is stale, and none of its runs start.
                    rejected.add(job_id)
                    continue
                if started:
                    # In flight, held by the releasing scheduler as long as the job was.
                    held = (scheduler_id, us(lease.expires_at))
                    conn.executemany(
                        INSERT_STARTED, [started_row(record, *held) for record in started]
                    )
                for record in finished:
                    self._record_finished(conn, record)
                stored_next, _, _, lease_expires = row
                next_run = stored_next
                if lease.job is None or stored_next == us_or_none(lease.job.next_run_time):
                    # Its next run time is the one acquired: unchanged, or changed in ways
                    # that do not touch its schedule (a new name, new arguments).
                    if release.remove and lease.job is not None:
                        conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
                        continue
                    next_run = us_or_none(release.next_run_time)
                due = next_run
                hold = release.hold_while_running
                if hold > 0 and next_run is not None:
                    # Counted inside this write transaction, which no finish_run of any
                    # process can interleave with: a run that ends after the count finds
                    # the job held and frees it; one that ended before is not counted.
                    (running,) = conn.execute(_COUNT_IN_FLIGHT, (job_id,)).fetchone()
                    if running >= hold:
                        due = None  # held (see _sqlite_schema): next_run_time stays
                conn.execute(
                    "UPDATE jobs SET next_run_time = ?, due = ?, lease_holder = NULL, "
                    "lease_expires = NULL, run_count = run_count + ? WHERE id = ?",
                    (next_run, due, len(started), job_id),
                )
                if due is not None and due < lease_expires:
                    earlier = True
            # Others sleep until the lease's expiry at the latest; tell them only when
            # the job is due before that.
            foreign = self._bump(conn) if earlier else False
        return rejected, foreign

    def _record_finished(self, conn: sqlite3.Connection, record: RunRecord) -> None:
        keep = self._run_retention
        if keep == 0:
            conn.execute("DELETE FROM runs WHERE id = ?", (record.id,))
            return
        (seq,) = conn.execute(NEXT_SEQ, (record.job_id,)).fetchone()
        conn.execute(INSERT_FINISHED, run_row(record, seq))
        if seq > keep:
            conn.execute(
                "DELETE FROM runs WHERE job_id = ? AND seq <= ?", (record.job_id, seq - keep)
            )

    # -------------------------------------------------------------------- runs

    async def finish_run(
        self,
        run: Run,
        *,
        retry: Run | None = None,
        expires_at: datetime | None = None,
        remove_finished_job: bool = False,
    ) -> bool:
        """Record a finished run; it no longer counts for max_instances.

        If ``run`` was in flight, ``retry`` takes its place in the same transaction, held
        by ``retry.scheduler_id`` until ``expires_at`` (see :meth:`Store.finish_run`).
        Without a retry, a job held until one of its runs ends
        (:attr:`Release.hold_while_running`) is due again, and every scheduler sharing
        the file is woken (this one at once, the other processes' by their pollers);
        with ``remove_finished_job``, a job left with nothing to do is deleted in the
        same transaction. Returns whether it was.
        Runs finishing while another call is writing are recorded together in the next
        transaction (a group commit): a burst of short runs costs one transaction per
        batch, not one per run.

        Raises:
            ValueError: ``retry`` without ``expires_at``.
        """
        serializer = self._serializer
        retry_row = None
        if retry is not None:
            if expires_at is None:
                raise ValueError(
                    f"finish_run: retry {retry.id} needs expires_at, the end of its lease"
                )
            retry_row = started_row(
                encode_run(retry, serializer), retry.scheduler_id, us(expires_at)
            )
        finishing = _Finishing(
            encode_run(run, serializer), retry_row, remove_finished_job and retry is None
        )
        self._finishing.append(finishing)
        if not self._flushing:
            self._flushing = True
            try:
                # Shielded: the runs of other callers are in this batch too, and each
                # must be recorded (or told why not) even if this caller is cancelled.
                with anyio.CancelScope(shield=True):
                    while self._finishing:
                        batch, self._finishing = self._finishing, []
                        await self._flush(batch)
            finally:
                self._flushing = False
        await finishing.done.wait()
        if finishing.error is not None:
            raise finishing.error
        return finishing.removed

    async def _flush(self, batch: list[_Finishing]) -> None:
        def finish(conn: sqlite3.Connection, batch: list[_Finishing]) -> bool:
            freed = False
            foreign = False
            removed: list[_Finishing] = []
            with self._writing(conn):
                for finishing in batch:
                    record = finishing.record
                    freed |= self._finish(conn, record, finishing.retry_row)
                    if finishing.remove and (
                        conn.execute(_REMOVE_IF_IDLE, (record.job_id, record.job_id)).rowcount
                    ):
                        removed.append(finishing)
                if freed or removed:
                    # For the pollers of the other processes (as for a new job, or a
                    # removed one).
                    foreign = self._bump(conn)
            for finishing in removed:
                finishing.removed = True  # committed
            # A freed job is due again, maybe at once: this scheduler may be sleeping
            # past it too. A removal wakes it as remove_job does.
            return freed or foreign

        wake = False
        try:
            wake = await self._call(finish, batch)
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                # One at a time, so that each caller gets its own outcome.
                for finishing in batch:
                    try:
                        wake |= await self._call(finish, [finishing])
                    except Exception as each:
                        finishing.error = each
        if wake and self._context is not None:
            self._context.wakeup()
        for finishing in batch:
            finishing.done.set()

    async def remove_job_if_idle(self, job_id: str) -> bool:
        """Delete the job if nothing of it is left to happen, in one write transaction
        (the statement of :meth:`finish_run`'s ``remove_finished_job``); return whether
        it was. The write lock orders it with every finish and release of any process.
        """

        def remove(conn: sqlite3.Connection) -> tuple[bool, bool]:
            with self._writing(conn):
                if not conn.execute(_REMOVE_IF_IDLE, (job_id, job_id)).rowcount:
                    return False, False
                return True, self._bump(conn)

        removed, foreign = await self._call(remove)
        self._bumped(foreign)
        return removed

    def _finish(
        self, conn: sqlite3.Connection, record: RunRecord, retry_row: tuple[Any, ...] | None
    ) -> bool:
        """Record one run in the caller's write transaction; returns whether its job was
        held and is now free."""
        # One primary-key lookup tells the three cases apart: in flight (seq NULL),
        # recorded already, or unknown (a run_job run, or trimmed by retention).
        row = conn.execute(_FINISHING, (record.id,)).fetchone()
        freed = False
        if row is not None:
            seq, held = row
            if seq is not None:
                return False  # the first record stays
            if retry_row is not None:
                # Before the finished row replaces the in-flight one, in this
                # transaction: the job's count of runs in flight never drops (and a
                # held job stays held).
                conn.execute(INSERT_STARTED, retry_row)
            elif held:
                # Held by a release that counted this run in flight (in a write
                # transaction too, so never in between): due again from its next run
                # time. Any of its runs leaving flight frees it, so a held job never
                # waits for a run that is gone.
                conn.execute("UPDATE jobs SET due = next_run_time WHERE id = ?", (record.job_id,))
                freed = True
        self._record_finished(conn, record)
        return freed

    async def extend_runs(
        self, scheduler_id: str, run_ids: Sequence[UUID], expires_at: datetime
    ) -> set[UUID]:
        """Renew this scheduler's leases of its in-flight runs, in one write transaction;
        return the ids among ``run_ids`` it no longer holds."""
        if not run_ids:
            return set()
        ids = [str(run_id) for run_id in run_ids]
        held = await self._call(self._extend_runs, scheduler_id, ids, us(expires_at))
        return {run_id for run_id in run_ids if str(run_id) not in held}

    def _extend_runs(
        self, conn: sqlite3.Connection, scheduler_id: str, ids: list[str], expires: int
    ) -> set[str]:
        held: set[str] = set()
        with self._writing(conn):
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                where = (
                    f"WHERE id IN ({','.join('?' * len(chunk))}) AND lease_holder = ? "
                    "AND seq IS NULL"
                )
                # Without RETURNING (SQLite 3.35): the write lock keeps the two in step.
                conn.execute(
                    f"UPDATE runs SET lease_expires = ? {where}", (expires, *chunk, scheduler_id)
                )
                held.update(
                    row[0]
                    for row in conn.execute(f"SELECT id FROM runs {where}", (*chunk, scheduler_id))
                )
        return held

    async def claim_expired_runs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> list[Run]:
        """Take over in-flight runs whose lease expired, oldest lease first.

        The database's write lock makes the claim exclusive: of several processes
        claiming at once, each run goes to one. When no lease has expired (the usual
        case), only a read happens, which never waits for writers.
        """
        if limit < 1:
            return []
        expires = us(now + timedelta(seconds=lease_duration))
        rows = await self._call(self._claim_expired_runs, scheduler_id, us(now), limit, expires)
        return [decode_run(run_record(row), self._serializer) for row in rows]

    def _claim_expired_runs(
        self, conn: sqlite3.Connection, scheduler_id: str, now: int, limit: int, expires: int
    ) -> list[Any]:
        if (
            conn.execute("SELECT 1 FROM runs WHERE lease_expires <= ? LIMIT 1", (now,)).fetchone()
            is None
        ):
            return []
        with self._writing(conn):
            rows = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE lease_expires <= ? "
                "ORDER BY lease_expires LIMIT ?",
                (now, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE runs SET lease_holder = ?, lease_expires = ? WHERE id = ?",
                [(scheduler_id, expires, row[0]) for row in rows],
            )
        return rows

    async def get_runs(self, job_id: str, limit: int = 100) -> list[Run]:
        """In-flight runs first, then finished ones, newest first."""
        if limit < 1:
            return []

        def read(conn: sqlite3.Connection) -> list[Any]:
            in_flight = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ? AND seq IS NULL "
                f"ORDER BY {IN_FLIGHT_ORDER} LIMIT ?",
                (job_id, limit),
            ).fetchall()
            finished = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE job_id = ? AND seq IS NOT NULL "
                "ORDER BY seq DESC LIMIT ?",
                (job_id, limit),
            ).fetchall()
            return (in_flight + finished)[:limit]

        rows = await self._call(read)
        return [decode_run(run_record(row), self._serializer) for row in rows]

    async def get_latest_runs(self, job_ids: Sequence[str]) -> dict[str, Run]:
        """Each job's latest run, as ``get_runs(job_id, 1)`` reads it: one read, which
        never waits for writers, of a few index lookups per id (one statement per 500
        ids, in one transaction, within SQLite's limit on bound values)."""
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return {}

        def read(conn: sqlite3.Connection) -> list[Any]:
            rows: list[Any] = []
            with self._reading(conn):
                for start in range(0, len(ids), _CHUNK):
                    chunk = ids[start : start + _CHUNK]
                    rows.extend(conn.execute(latest_runs(len(chunk)), chunk))
            return rows

        rows = await self._call(read)
        return {row[1]: decode_run(run_record(row), self._serializer) for row in rows}

    async def get_runs_in_flight(self, limit: int = 1000) -> list[Run]:
        """The runs in flight (removed jobs' too), by scheduled time then id: one read of
        the in-flight runs' index, whatever the size of the history."""
        if limit < 1:
            return []
        rows = await self._call(lambda conn: conn.execute(RUNS_IN_FLIGHT, (limit,)).fetchall())
        return [decode_run(run_record(row), self._serializer) for row in rows]

    # -------------------------------------------------------------- schedulers

    async def heartbeat(self, info: SchedulerInfo) -> None:
        """Write the scheduler's record, and delete the records stale for longer than
        :data:`SCHEDULER_RECORD_KEEP`, in one write transaction.

        Other processes' pollers are not woken: the change counter stays as it is.
        """
        cutoff = us(info.heartbeat_at - timedelta(seconds=SCHEDULER_RECORD_KEEP))
        row = scheduler_row(info)

        def write(conn: sqlite3.Connection) -> None:
            with self._writing(conn):
                conn.execute(DROP_STALE_SCHEDULERS, (cutoff,))
                conn.execute(HEARTBEAT, row)

        await self._call(write)

    async def remove_scheduler(self, scheduler_id: str) -> None:
        """Delete the scheduler's record, if there is one."""

        def remove(conn: sqlite3.Connection) -> None:
            with self._writing(conn):
                conn.execute("DELETE FROM schedulers WHERE id = ?", (scheduler_id,))

        await self._call(remove)

    async def get_schedulers(self, now: datetime) -> list[SchedulerInfo]:
        """The records by id, with the leases each scheduler holds at ``now``: one read,
        which never waits for writers."""
        when = us(now)
        rows = await self._call(lambda conn: conn.execute(SCHEDULERS, (when, when)).fetchall())
        return [scheduler_info(row) for row in rows]


def _notify(context: StoreContext, wake: bool, events: list[Event]) -> None:
    # In the event loop, called by the poller thread.
    if wake:
        context.wakeup()
    for event in events:
        context.publish(event)


class _Finishing:
    """A run waiting for its outcome to be written (and its retry, if any, to start)."""

    __slots__ = ("done", "error", "record", "remove", "removed", "retry_row")

    def __init__(self, record: RunRecord, retry_row: tuple[Any, ...] | None, remove: bool) -> None:
        self.record = record
        self.retry_row = retry_row
        # Whether to remove the job if the run leaves it with nothing to do, and
        # whether that happened (see Store.finish_run's remove_finished_job).
        self.remove = remove
        self.removed = False
        self.done = anyio.Event()
        self.error: Exception | None = None
