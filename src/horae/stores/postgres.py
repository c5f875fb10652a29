"""The PostgreSQL store: many scheduler processes, on many machines, sharing one database."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import anyio
import attrs

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
from horae.stores._postgres_sql import CURRENT_VERSION, SCHEMA_NAME, Statements
from horae.stores.base import SCHEDULER_RECORD_KEEP, Lease, Release, SchedulerInfo, StoreContext

__all__ = ["PostgresStore"]

logger = logging.getLogger(__name__)

# How long to wait between attempts to bring a lost LISTEN connection back.
_LISTENER_RETRY = 5.0

# A NOTIFY payload must be shorter than 8000 bytes; event batches are cut into
# messages of at most this many.
_NOTIFY_LIMIT = 7900

# One round trip for every message of a batch.
_NOTIFY_EVENTS = "SELECT count(pg_notify($1, message)) FROM unnest($2::text[]) AS m(message)"


def _run_arrays(records: Sequence[RunRecord]) -> list[list[Any]]:
    """The columns of ``records`` as one array each, in ``_RUN_COLUMNS`` order."""
    return [
        [r.id for r in records],
        [r.job_id for r in records],
        [r.scheduled_time for r in records],
        [r.started_at for r in records],
        [r.finished_at for r in records],
        [r.outcome for r in records],
        [r.result for r in records],
        [r.error for r in records],
        [r.scheduler_id for r in records],
        [r.attempt for r in records],
        [r.coalesced for r in records],
    ]


def _events_channel(schema: str) -> str:
    """``<schema>_events``, kept within PostgreSQL's 63-byte identifiers."""
    channel = f"{schema}_events"
    if len(channel) <= 63:
        return channel
    # Long schema names: a digest keeps distinct schemas on distinct channels.
    digest = hashlib.sha1(schema.encode()).hexdigest()[:8]
    return f"{schema[:47]}_{digest}_events"


def _import_asyncpg() -> Any:
    # asyncpg ships no type information, hence Any for its objects in this module.
    try:
        return importlib.import_module("asyncpg")
    except ModuleNotFoundError as exc:
        if exc.name != "asyncpg":
            raise
        raise StoreError(
            "PostgresStore needs asyncpg, which is not installed; "
            "install it with: pip install horae[postgres]"
        ) from None


@attrs.frozen
class _Retry:
    """A retry to put in flight in place of the finished run ``after``."""

    after: str
    record: RunRecord
    expires_at: datetime


@attrs.define
class _RunBatch:
    """Finished runs waiting to be written together (see ``finish_run``).

    ``retries[i]`` is the retry asked for with ``records[i]``, if any. ``removing``
    holds the jobs to remove if their run leaves them with nothing to do (see
    ``Store.finish_run``'s ``remove_finished_job``), ``removed`` those removed.
    """

    records: list[RunRecord] = attrs.Factory(list)
    retries: list[_Retry | None] = attrs.Factory(list)
    removing: list[str] = attrs.Factory(list)
    removed: list[str] = attrs.Factory(list)
    done: anyio.Event = attrs.Factory(anyio.Event)
    error: BaseException | None = None

    def took_removal(self, job_id: str) -> bool:
        """Whether ``job_id`` was removed; only the first caller asking is told so (two
        runs of the job in the batch, both asking for the removal)."""
        if job_id in self.removed:
            self.removed.remove(job_id)
            return True
        return False


async def _no_reset(connection: Any) -> None:
    # The store's own pool keeps no session state (its only lock is transaction-level),
    # so the reset round trip asyncpg makes on every release by default is pure cost.
    return None


class PostgresStore:
    """Keeps jobs and runs in PostgreSQL, shared safely by any number of schedulers.

    Due jobs are leased in batches by one ``UPDATE ... FROM (SELECT ... FOR UPDATE SKIP
    LOCKED)`` statement, so concurrent schedulers take disjoint jobs without waiting
    for each other; a scheduler that dies leaves leases that expire, and another takes
    its jobs over. A job held while its runs fill its slots
    (``Release.hold_while_running``) is not due until one of them ends. Changes wake the
    other schedulers through ``LISTEN``/``NOTIFY`` on a channel named after the schema.
    The tables are created on :meth:`start` if missing; see ``docs/store-postgres.md``
    for the layout and its upgrade path. The register of schedulers (:meth:`heartbeat`)
    is a table of its own, ``schedulers``, outside the versioned layout: it is created
    at every start if missing, and processes of an older horae simply ignore it.

    asyncpg runs on asyncio only: this store does not work under trio.

    Args:
        dsn_or_pool: a connection string (the store opens a pool in :meth:`start` and
            closes it in :meth:`stop`), or an ``asyncpg.Pool`` that the store uses and
            never closes. With a pool, one of its connections is held for listening
            while the store runs.
        schema: the PostgreSQL schema holding the tables (a plain identifier: letters,
            digits and ``_``, at most 63 characters). Schedulers sharing jobs use the same.
        serializer: how arguments and results are stored (``JSONSerializer()`` by
            default).
        run_retention: how many finished runs to keep per job.

    Example::

        from horae import AsyncScheduler
        from horae.stores.postgres import PostgresStore

        store = PostgresStore("postgresql://app@db.example/app", schema="jobs")
        async with AsyncScheduler(store) as scheduler:
            await scheduler.add_job(tick, "interval", seconds=5, id="tick")
    """

    def __init__(
        self,
        dsn_or_pool: str | Any,
        *,
        schema: str = "horae",
        serializer: Serializer | None = None,
        run_retention: int = 100,
    ) -> None:
        asyncpg = _import_asyncpg()
        if isinstance(dsn_or_pool, str):
            if not dsn_or_pool:
                raise JobArgumentError("dsn_or_pool: give a PostgreSQL DSN or an asyncpg Pool")
        elif not isinstance(dsn_or_pool, asyncpg.Pool):
            raise JobArgumentError(
                f"dsn_or_pool: {dsn_or_pool!r} is neither a DSN string nor an asyncpg.Pool"
            )
        if not isinstance(schema, str) or not SCHEMA_NAME.fullmatch(schema):
            raise JobArgumentError(
                f"schema: {schema!r} is not allowed; use letters, digits and '_' "
                "(not starting with a digit), at most 63 characters"
            )
        self._asyncpg = asyncpg
        self._dsn = dsn_or_pool if isinstance(dsn_or_pool, str) else None
        self._given_pool: Any = None if isinstance(dsn_or_pool, str) else dsn_or_pool
        self._schema = schema
        self._serializer = _options.serializer(serializer)
        self._left_out = LeftOut(logger)
        self._run_retention = _options.run_retention(run_retention)
        self._sql = Statements.for_schema(schema)
        self._pool: Any = None
        self._listener: Any = None
        self._listener_lost = False
        self._listener_retry_at = 0.0
        self._context: StoreContext | None = None
        # Notifications carry the sender's scheduler id, so a scheduler skips its own.
        self._sender = ""
        # Event messages carry this store instance's token, for the same reason.
        self._events_sender = uuid.uuid4().hex
        self._events_channel = _events_channel(schema)
        self._finishing = _RunBatch()
        self._finish_lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"PostgresStore(schema={self._schema!r})"

    @property
    def schema(self) -> str:
        """The schema holding this store's tables (also its NOTIFY channel)."""
        return self._schema

    @property
    def pool(self) -> Any:
        """The asyncpg pool in use (``None`` before :meth:`start`)."""
        return self._pool

    # ------------------------------------------------------------ life cycle

    async def start(self, context: StoreContext) -> None:
        """Open the pool (for a DSN), create or upgrade the tables, start listening."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise StoreError(
                "PostgresStore runs on asyncio only (asyncpg does not support trio); "
                "run the scheduler under asyncio, or use SQLiteStore or RedisStore"
            ) from None
        if self._pool is not None:
            raise StoreError("this PostgresStore is already started; stop it first")
        self._context = context
        self._sender = context.scheduler_id
        if self._given_pool is not None:
            pool = self._given_pool
            if pool.get_max_size() < 2:
                raise StoreError(
                    "PostgresStore holds one connection of the pool for LISTEN while it "
                    "runs; give it a pool with max_size >= 2"
                )
        else:
            pool = await self._asyncpg.create_pool(
                self._dsn, min_size=1, max_size=10, reset=_no_reset
            )
        try:
            await self._prepare(pool)
            self._pool = pool
            await self._listen()
        except BaseException:
            self._pool = None
            if self._given_pool is None:
                await pool.close()
            raise

    async def _prepare(self, pool: Any) -> None:
        sql = self._sql
        async with pool.acquire() as conn, conn.transaction():
            # Several processes may start at once: one creates or upgrades the tables,
            # the others wait here and then find them ready.
            await conn.execute(sql.lock, f"horae.schema:{self._schema}")
            await conn.execute(sql.prepare)
            version = await conn.fetchval(sql.version)
            version = 0 if version is None else int(version)
            if version > CURRENT_VERSION:
                raise StoreError(
                    f"schema {self._schema!r} has layout version {version}, newer than "
                    f"this horae reads ({CURRENT_VERSION}); upgrade horae in this process"
                )
            if version < CURRENT_VERSION:
                for step in range(version + 1, CURRENT_VERSION + 1):
                    await conn.execute(sql.migrations[step])
                await conn.execute(sql.set_version, CURRENT_VERSION)
            # Not a migration: see _REGISTER for why the register bumps no version.
            await conn.execute(sql.register)

    async def stop(self) -> None:
        """Stop listening, give back leases still held, close what :meth:`start` opened."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await self._unlisten(pool)
            if self._context is not None:
                try:
                    await pool.execute(self._sql.drop_leases, self._context.scheduler_id)
                except (OSError, self._asyncpg.PostgresError) as exc:
                    logger.warning(
                        "PostgresStore(schema=%r): could not give back leases at stop "
                        "(they expire by themselves): %s",
                        self._schema,
                        exc,
                    )
        finally:
            if self._given_pool is None:
                await pool.close()

    # -------------------------------------------------------------- listening

    async def _listen(self) -> None:
        if self._given_pool is not None:
            conn = await self._given_pool.acquire()
        else:
            conn = await self._asyncpg.connect(self._dsn)
        try:
            await conn.add_listener(self._schema, self._notified)
            await conn.add_listener(self._events_channel, self._events_notified)
            conn.add_termination_listener(self._listener_terminated)
        except BaseException:
            await self._close_listener(conn)
            raise
        self._listener = conn
        self._listener_lost = False

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload != self._sender and self._context is not None:
            self._context.wakeup()

    def _events_notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        context = self._context
        if context is None or self._events_sender in payload[:80]:
            return  # not started, or (cheaply, before decoding) a message of our own
        sender, events = unpack(payload, self._serializer)
        if sender == self._events_sender:
            return
        for event in events:
            context.publish(event)

    def _listener_terminated(self, conn: Any) -> None:
        if conn is not self._listener or self._pool is None:
            return
        # One line per outage; schedulers still run their jobs on their own timers,
        # they only stop being woken early by other processes until it is back.
        logger.warning(
            "PostgresStore(schema=%r): the LISTEN connection was lost; changes made by "
            "other schedulers wake this one only at its next timer until it is back",
            self._schema,
        )
        self._listener_lost = True
        self._listener_retry_at = time.monotonic()

    async def _close_listener(self, conn: Any) -> None:
        if self._given_pool is not None:
            await self._given_pool.release(conn)
        else:
            await conn.close()

    async def _unlisten(self, pool: Any) -> None:
        conn, self._listener = self._listener, None
        if conn is None:
            return
        try:
            conn.remove_termination_listener(self._listener_terminated)
            if not conn.is_closed():
                await conn.remove_listener(self._schema, self._notified)
                await conn.remove_listener(self._events_channel, self._events_notified)
        except (OSError, self._asyncpg.PostgresError, self._asyncpg.InterfaceError):
            pass  # the connection is going away; closing it below is what matters
        finally:
            await self._close_listener(conn)

    async def _relisten(self) -> None:
        # Called from the scheduler's own calls (no background task to own): bring a
        # lost LISTEN connection back, at most every _LISTENER_RETRY seconds.
        if not self._listener_lost or time.monotonic() < self._listener_retry_at:
            return
        self._listener_retry_at = time.monotonic() + _LISTENER_RETRY
        old, self._listener = self._listener, None
        if old is not None:
            # Already dead: that is why we are here; closing only frees what is left.
            with contextlib.suppress(
                OSError, self._asyncpg.PostgresError, self._asyncpg.InterfaceError
            ):
                await self._close_listener(old)
        try:
            await self._listen()
        except (OSError, self._asyncpg.PostgresError, self._asyncpg.InterfaceError):
            self._listener_lost = True
            return
        logger.warning("PostgresStore(schema=%r): listening again", self._schema)
        if self._context is not None:
            self._context.wakeup()  # what was notified meanwhile was missed

    def _require_pool(self) -> Any:
        pool = self._pool
        if pool is None:
            raise StoreError("the PostgresStore is not started; start() it first")
        return pool

    # ------------------------------------------------------------------- jobs

    async def add_jobs(self, jobs: Sequence[Job], *, replace: bool) -> None:
        """Add jobs in one statement; an existing id is replaced only with ``replace``."""
        pool = self._require_pool()
        by_id: dict[str, tuple[datetime | None, str]] = {}
        for job in jobs:
            if not replace and job.id in by_id:
                raise ConflictingIdError(job.id)
            # Encoding first: an unstorable job refuses the batch before anything is
            # written. With replace, the last of duplicate ids wins.
            by_id[job.id] = (job.next_run_time, encode_job(job, self._serializer))
        if not by_id:
            return
        ids = list(by_id)
        times = [value[0] for value in by_id.values()]
        payloads = [value[1] for value in by_id.values()]
        statement = self._sql.upsert_jobs if replace else self._sql.insert_jobs
        try:
            await pool.execute(statement, ids, times, payloads, self._schema, self._sender)
        except self._asyncpg.UniqueViolationError:
            existing = await pool.fetch(self._sql.existing_ids, ids)
            taken = existing[0]["id"] if existing else ids[0]
            raise ConflictingIdError(taken) from None

    async def get_job(self, job_id: str) -> Job:
        """The job with that id; raises ``DeserializationError`` for an unreadable row."""
        row = await self._require_pool().fetchrow(self._sql.get_job, job_id)
        if row is None:
            raise JobLookupError(job_id)
        return decode_job(job_id, row["next_run_time"], row["payload"], self._serializer)

    async def get_jobs(self) -> list[Job]:
        """Every readable job, by next run time, paused jobs last.

        A row that cannot be read back is logged and skipped, never deleted.
        """
        jobs: list[Job] = []
        for row in await self._require_pool().fetch(self._sql.get_jobs):
            try:
                jobs.append(
                    decode_job(row["id"], row["next_run_time"], row["payload"], self._serializer)
                )
            except DeserializationError as exc:
                self._left_out.report(self, row["id"], exc)
        return jobs

    async def update_job(self, job: Job) -> None:
        """Replace the stored job of the same id."""
        payload = encode_job(job, self._serializer)
        changed = await self._require_pool().fetchval(
            self._sql.update_job, job.id, payload, job.next_run_time, self._schema, self._sender
        )
        if not changed:
            raise JobLookupError(job.id)

    async def remove_job(self, job_id: str) -> None:
        """Remove a job (its run history stays readable)."""
        removed = await self._require_pool().fetchval(
            self._sql.remove_job, job_id, self._schema, self._sender
        )
        if not removed:
            raise JobLookupError(job_id)

    async def remove_all_jobs(self) -> None:
        """Remove every job."""
        await self._require_pool().execute(self._sql.remove_all_jobs, self._schema, self._sender)

    async def next_run_time(self) -> datetime | None:
        """The earliest next run time of a job neither leased nor held.

        A leased job counts at its lease expiry (when it can be taken over from a
        scheduler that died).
        """
        pool = self._require_pool()
        if self._listener_lost:
            await self._relisten()
        value: datetime | None = await pool.fetchval(self._sql.next_run_time)
        return value

    # ----------------------------------------------------------------- leases

    async def acquire_jobs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> list[Lease]:
        """Lease up to ``limit`` due jobs, earliest first, in one statement."""
        pool = self._require_pool()
        if limit <= 0:
            return []
        expires = now + timedelta(seconds=lease_duration)
        rows = await pool.fetch(self._sql.acquire, now, limit, scheduler_id, expires)
        rows = sorted((row for row in rows if row["take"]), key=lambda row: row["due_at"])
        running: dict[str, int] = {}
        if rows:
            counted = await pool.fetch(self._sql.count_running, [row["id"] for row in rows])
            running = {row["job_id"]: row["running"] for row in counted}
        leases: list[Lease] = []
        serializer = self._serializer
        for row in rows:
            job_id = row["id"]
            job: Job | None
            error: Exception | None = None
            try:
                job = decode_job(job_id, row["next_run_time"], row["payload"], serializer)
            except DeserializationError as exc:
                job, error = None, exc
            leases.append(
                Lease(
                    job_id=job_id,
                    job=job,
                    error=error,
                    scheduler_id=scheduler_id,
                    expires_at=expires,
                    token=row["lease_token"],
                    running=running.get(job_id, 0),
                    run_count=row["run_count"],
                )
            )
        return leases

    async def release_jobs(self, scheduler_id: str, releases: Sequence[Release]) -> set[str]:
        """Give leased jobs back and record their runs, in one statement per batch.

        A batch where a release asks for ``hold_while_running`` goes through a variant
        of the statement that also counts (by locking) the runs in flight of those jobs
        and holds the jobs whose slots they fill; other batches do not pay for that.
        """
        pool = self._require_pool()
        if not releases:
            return set()
        statement, args = self._release_statement(scheduler_id, releases)
        row = await pool.fetchrow(statement, *args)
        accepted = set(row["accepted"])
        return {release.lease.job_id for release in releases} - accepted

    def _release_statement(
        self, scheduler_id: str, releases: Sequence[Release]
    ) -> tuple[str, list[Any]]:
        """The statement releasing ``releases``, and its arguments."""
        ids: list[str] = []
        tokens: list[int] = []
        next_times: list[datetime | None] = []
        leased_times: list[datetime | None] = []
        has_job: list[bool] = []
        removes: list[bool] = []
        started_counts: list[int] = []
        holds: list[int] = []
        runs: list[RunRecord] = []
        # The lease expiry of each started run, None for each finished one.
        run_expiries: list[datetime | None] = []
        trim_ids: list[str] = []
        trim_keep: list[int] = []
        retention = self._run_retention
        notify = False
        serializer = self._serializer
        for release in releases:
            lease = release.lease
            ids.append(lease.job_id)
            tokens.append(lease.token)
            next_times.append(release.next_run_time)
            leased_times.append(None if lease.job is None else lease.job.next_run_time)
            has_job.append(lease.job is not None)
            removes.append(release.remove)
            started_counts.append(len(release.started))
            holds.append(release.hold_while_running)
            if release.next_run_time is not None and release.next_run_time < lease.expires_at:
                # Others may sleep until this lease expires: wake them for the earlier time.
                notify = True
            if release.started:
                runs.extend(encode_run(run, serializer) for run in release.started)
                run_expiries.extend([lease.expires_at] * len(release.started))
            if release.finished:
                # Only the newest `retention` of them would survive the trim anyway.
                finished = release.finished[max(len(release.finished) - retention, 0) :]
                runs.extend(encode_run(run, serializer) for run in finished)
                run_expiries.extend([None] * len(finished))
                trim_ids.append(lease.job_id)
                trim_keep.append(max(retention - len(finished), 0))
        args: list[Any] = [
            ids,
            tokens,
            next_times,
            leased_times,
            has_job,
            removes,
            *_run_arrays(runs),
            trim_ids,
            trim_keep,
            self._schema,
            self._sender,
            notify,
            scheduler_id,
            run_expiries,
            started_counts,
        ]
        if any(holds):
            return self._sql.release_hold, [*args, holds]
        return self._sql.release, args

    # ------------------------------------------------------------------- runs

    async def finish_run(
        self,
        run: Run,
        *,
        retry: Run | None = None,
        expires_at: datetime | None = None,
        remove_finished_job: bool = False,
    ) -> bool:
        """Record a run's outcome; it no longer counts for max_instances.

        ``retry`` takes its place in flight, in the same statement, if the run was
        still in flight (see :meth:`Store.finish_run`). A run that keeps its job held
        and ends without a retry frees the job in the same statement too, and wakes the
        other schedulers (``NOTIFY``). With ``remove_finished_job``, a job left with
        nothing to do is removed in the same transaction; returns whether it was.

        Runs finishing at the same time are written together: the first caller of a
        batch waits for the write before it (one at a time), meanwhile the others join
        its batch, and one statement records them all. Under a burst that turns
        thousands of round trips a second into a few dozen.
        """
        self._require_pool()
        record = encode_run(run, self._serializer)
        retry_entry: _Retry | None = None
        if retry is not None:
            if expires_at is None:
                raise JobArgumentError("finish_run: a retry needs expires_at (its lease expiry)")
            retry_entry = _Retry(
                after=record.id,
                record=encode_run(retry, self._serializer),
                expires_at=expires_at,
            )
        remove = remove_finished_job and retry is None
        batch = self._finishing
        batch.records.append(record)
        batch.retries.append(retry_entry)
        if remove:
            batch.removing.append(run.job_id)
        if len(batch.records) > 1:
            # The batch's first caller writes it: wait for that.
            await batch.done.wait()
            if batch.error is not None:
                raise StoreError(
                    f"recording the outcome of run {run.id} of job {run.job_id!r} failed: "
                    f"{batch.error}"
                ) from batch.error
            return remove and batch.took_removal(run.job_id)
        # Shielded: the other callers of this batch rely on this one to write it.
        with anyio.CancelScope(shield=True):
            try:
                async with self._finish_lock:
                    if self._finishing is batch:
                        self._finishing = _RunBatch()
                    batch.removed = await self._write_runs(
                        batch.records, batch.retries, batch.removing
                    )
            except BaseException as exc:
                batch.error = exc
                raise
            finally:
                batch.done.set()
        return remove and batch.took_removal(run.job_id)

    async def _write_runs(
        self, records: list[RunRecord], asked: list[_Retry | None], removing: list[str]
    ) -> list[str]:
        """Write a batch of finished runs; remove the jobs of ``removing`` left with
        nothing to do, and return those removed."""
        pool = self._require_pool()
        retries = [retry for retry in asked if retry is not None]
        if len(records) > 1 and len({r.id for r in records}) < len(records):
            # One run finished twice in one batch (by its scheduler, and by another
            # that claimed it, in one process): the first finish counts, with its retry,
            # as if they had been written one after the other.
            seen: set[str] = set()
            firsts: list[RunRecord] = []
            retries = []
            for r, retry in zip(records, asked, strict=True):
                if r.id not in seen:
                    seen.add(r.id)
                    firsts.append(r)
                    if retry is not None:
                        retries.append(retry)
            records = firsts
        ended = [r.id for r in records]
        retry_arrays = [
            [retry.after for retry in retries],
            *_run_arrays([retry.record for retry in retries]),
            [retry.expires_at for retry in retries],
        ]
        statement: str
        args: list[Any]
        if self._run_retention == 0:
            statement = self._sql.forget_runs
            args = [ended, [r.job_id for r in records], *retry_arrays, self._schema, self._sender]
            if not removing:
                await pool.execute(statement, *args)
                return []
            return await self._finish_and_remove(pool, statement, args, removing)
        if len(records) > self._run_retention:
            # Only the newest `retention` runs of a job survive: write no more than that.
            per_job: dict[str, int] = {}
            kept: list[RunRecord] = []
            for r in reversed(records):
                count = per_job.get(r.job_id, 0)
                if count < self._run_retention:
                    per_job[r.job_id] = count + 1
                    kept.append(r)
            kept.reverse()
            records = kept
        statement = self._sql.finish_runs
        args = [
            *_run_arrays(records),
            self._run_retention,
            ended,
            *retry_arrays,
            self._schema,
            self._sender,
        ]
        if not removing:
            await pool.execute(statement, *args)
            return []
        return await self._finish_and_remove(pool, statement, args, removing)

    async def _finish_and_remove(
        self, pool: Any, statement: str, args: list[Any], removing: list[str]
    ) -> list[str]:
        """The finish statement, then the removal of the jobs of ``removing`` left with
        nothing to do, in one transaction (see ``_REMOVE_IDLE_JOBS``)."""
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(statement, *args)
            return await self._remove_idle(conn, removing)

    async def _remove_idle(self, conn: Any, job_ids: list[str]) -> list[str]:
        """In the caller's transaction: lock the rows of ``job_ids``, then remove those
        left with nothing to do; return their ids (see ``_LOCK_JOBS``)."""
        sql = self._sql
        await conn.execute(sql.lock_jobs, job_ids)
        removed: list[str] = await conn.fetchval(
            sql.remove_idle_jobs, job_ids, self._schema, self._sender
        )
        return removed

    async def remove_job_if_idle(self, job_id: str) -> bool:
        """Remove the job if nothing of it is left to happen, in one transaction: the two
        statements of :meth:`finish_run`'s ``remove_finished_job`` (the job row locked,
        then the removal in a snapshot taken under that lock); return whether it was.
        """
        async with self._require_pool().acquire() as conn, conn.transaction():
            return bool(await self._remove_idle(conn, [job_id]))

    async def extend_runs(
        self, scheduler_id: str, run_ids: Sequence[UUID], expires_at: datetime
    ) -> set[UUID]:
        """Renew the leases of in-flight runs ``scheduler_id`` holds, in one statement.

        Returns the ids among ``run_ids`` it no longer holds (claimed or finished).
        """
        pool = self._require_pool()
        if not run_ids:
            return set()
        renewed = await pool.fetchval(self._sql.extend_runs, scheduler_id, run_ids, expires_at)
        return set(run_ids).difference(renewed)

    async def claim_expired_runs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> list[Run]:
        """Take over in-flight runs whose lease expired, oldest lease first.

        One statement; concurrent claimers (``FOR UPDATE SKIP LOCKED``) take disjoint
        runs, and the ``running_expires_at`` index keeps it from reading the rest.
        """
        pool = self._require_pool()
        if limit <= 0:
            return []
        expires = now + timedelta(seconds=lease_duration)
        rows = await pool.fetch(self._sql.claim_runs, scheduler_id, now, limit, expires)
        rows.sort(key=lambda row: (row["expired_at"], row["id"]))
        return [self._run_from_row(row) for row in rows]

    def _run_from_row(self, row: Any) -> Run:
        return decode_run(
            RunRecord(
                id=str(row["id"]),
                job_id=row["job_id"],
                scheduled_time=row["scheduled_time"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                outcome=row["outcome"],
                result=row["result"],
                error=row["error"],
                scheduler_id=row["scheduler_id"],
                attempt=row["attempt"],
                coalesced=row["coalesced"],
            ),
            self._serializer,
        )

    async def broadcast(self, events: Sequence[Event]) -> None:
        """Send events to the other schedulers with ``NOTIFY`` on ``<schema>_events``.

        A batch goes as few messages as fit NOTIFY's payload limit (8000 bytes), all in
        one round trip; an event too large for a message of its own is cut (logged).
        Schedulers whose LISTEN connection is down meanwhile miss them.
        """
        if not events:
            return
        messages = pack(self._events_sender, events, self._serializer, _NOTIFY_LIMIT)
        if messages:
            await self._require_pool().fetchval(_NOTIFY_EVENTS, self._events_channel, messages)

    # -------------------------------------------------------------- register

    async def heartbeat(self, info: SchedulerInfo) -> None:
        """Write the scheduler's record and drop the long-stale ones, in one statement.

        Nobody is notified: other schedulers read the register when asked, never wait
        for it.
        """
        cutoff = info.heartbeat_at - timedelta(seconds=SCHEDULER_RECORD_KEEP)
        await self._require_pool().execute(
            self._sql.heartbeat,
            info.id,
            info.host,
            info.pid,
            info.started_at,
            info.heartbeat_at,
            info.expires_at,
            info.state,
            info.version,
            cutoff,
        )

    async def remove_scheduler(self, scheduler_id: str) -> None:
        """Delete the scheduler's record, if there is one."""
        await self._require_pool().execute(self._sql.remove_scheduler, scheduler_id)

    async def get_schedulers(self, now: datetime) -> list[SchedulerInfo]:
        """The records by id, with the leases each holds at ``now``, in one statement."""
        rows = await self._require_pool().fetch(self._sql.get_schedulers, now)
        return [
            SchedulerInfo(
                id=row["id"],
                host=row["host"],
                pid=row["pid"],
                started_at=row["started_at"],
                heartbeat_at=row["heartbeat_at"],
                expires_at=row["expires_at"],
                state=row["state"],
                version=row["version"],
                job_leases=row["job_leases"],
                run_leases=row["run_leases"],
            )
            for row in rows
        ]

    async def get_runs(self, job_id: str, limit: int = 100) -> list[Run]:
        """In-flight runs first, then finished ones, newest first.

        Runs in flight for one scheduled time come by run id.
        """
        rows = await self._require_pool().fetch(self._sql.get_runs, job_id, limit)
        return [self._run_from_row(row) for row in rows]

    async def get_job_ids(self) -> list[str]:
        """Every job id, sorted, in one statement; no payload is read."""
        ids: list[str] = await self._require_pool().fetchval(self._sql.get_job_ids)
        return sorted(ids)

    async def get_latest_runs(self, job_ids: Sequence[str]) -> dict[str, Run]:
        """Each job's first run of :meth:`get_runs`, for every id in one statement."""
        if not job_ids:
            return {}
        wanted = list(dict.fromkeys(job_ids))
        rows = await self._require_pool().fetch(self._sql.get_latest_runs, wanted)
        return {row["job_id"]: self._run_from_row(row) for row in rows}

    async def get_runs_in_flight(self, limit: int = 1000) -> list[Run]:
        """In-flight runs by scheduled time, then id, in one statement."""
        pool = self._require_pool()
        if limit <= 0:
            return []
        rows = await pool.fetch(self._sql.get_runs_in_flight, limit)
        return [self._run_from_row(row) for row in rows]
