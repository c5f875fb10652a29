"""The Redis store: jobs in hashes, due jobs in a sorted set, Lua scripts for atomicity."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime, timedelta, timezone
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import anyio

from horae._event_codec import pack, unpack
from horae.errors import ConflictingIdError, JobLookupError, StoreError
from horae.events import Event
from horae.jobs import Job, Run
from horae.serializers import Serializer
from horae.stores import _options
from horae.stores import _redis_lua as lua
from horae.stores._codec import LeftOut, RunRecord, decode_job, decode_run, encode_job, encode_run
from horae.stores.base import (
    SCHEDULER_RECORD_KEEP,
    Lease,
    Release,
    SchedulerInfo,
    StoreContext,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import PubSub

__all__ = ["RedisStore"]

logger = logging.getLogger(__name__)

#: Version of the key layout; see docs/store-redis.md for what each version holds.
#: Version 2 added the leases of in-flight runs, version 3 the run count of each job and
#: the set of held jobs; ``start()`` upgrades versions 1 and 2 in place.
#: The register of schedulers (``{prefix}:schedulers`` and ``{prefix}:heartbeats``) came
#: later without a new version: its keys are new, written by the first heartbeat (Redis
#: has nothing to create at start), and nothing that layout 3 holds changed, so a horae
#: of layout 3 that predates the register keeps working on the same prefix, ignoring them
#: (its schedulers are just not listed). A version bump would have made it refuse to start.
LAYOUT_VERSION = 3

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_RUN_TIMES = ("scheduled_time", "started_at", "finished_at")


def _import_redis() -> tuple[ModuleType, ModuleType]:
    try:
        import redis.asyncio
        import redis.exceptions
    except ImportError as exc:
        raise ImportError(
            "RedisStore needs the redis package (redis-py >= 5): pip install horae[redis]",
            name="redis",
        ) from exc
    return redis.asyncio, redis.exceptions


def _us(moment: datetime) -> str:
    # Exact integer microseconds: floats would round, and Lua would round them again.
    return str((moment - _EPOCH) // _US)


def _moment(us: str | bytes) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def _text(value: str | bytes) -> str:
    # A client given by the user may or may not decode responses.
    return value.decode() if isinstance(value, bytes) else value


#: Job ids per LATEST script call (get_latest_runs): about 3 ms of server time each.
_LATEST_CHUNK = 1000


class _Script:
    __slots__ = ("name", "sha", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()


_ADD = _Script("add", lua.ADD)
_UPDATE = _Script("update", lua.UPDATE)
_REMOVE = _Script("remove", lua.REMOVE)
_REMOVE_ALL = _Script("remove_all", lua.REMOVE_ALL)
_REMOVE_IDLE = _Script("remove_idle", lua.REMOVE_IDLE)
_LIST = _Script("list", lua.LIST)
_ACQUIRE = _Script("acquire", lua.ACQUIRE)
_RELEASE = _Script("release", lua.RELEASE)
_FINISH = _Script("finish", lua.FINISH)
_EXTEND = _Script("extend", lua.EXTEND)
_CLAIM = _Script("claim", lua.CLAIM)
_HEARTBEAT = _Script("heartbeat", lua.HEARTBEAT)
_SCHEDULERS = _Script("schedulers", lua.SCHEDULERS)
_JOB_IDS = _Script("job ids", lua.JOB_IDS)
_LATEST = _Script("latest runs", lua.LATEST)
_IN_FLIGHT = _Script("runs in flight", lua.IN_FLIGHT)
_UPGRADE = _Script("upgrade", lua.UPGRADE)
_UPGRADE_3 = _Script("upgrade to 3", lua.UPGRADE_3)
_SCRIPTS = (
    _ADD,
    _UPDATE,
    _REMOVE,
    _REMOVE_ALL,
    _REMOVE_IDLE,
    _LIST,
    _ACQUIRE,
    _RELEASE,
    _FINISH,
    _EXTEND,
    _CLAIM,
    _HEARTBEAT,
    _SCHEDULERS,
    _JOB_IDS,
    _LATEST,
    _IN_FLIGHT,
)


class RedisStore:
    """Keeps jobs in Redis, shared safely by any number of scheduler processes.

    Due jobs sit in a sorted set by next run time; acquiring a batch of them, releasing a
    batch and recording a run are each one Lua script call (atomic on the server, one
    round trip). Leases carry a fencing token, so a scheduler whose lease expired cannot
    overwrite the job another scheduler took over. Runs in flight are leased too (a
    sorted set by lease expiry), so the runs of a crashed scheduler are claimed by
    another without scanning the rest. A job held while its runs fill its slots
    (``Release.hold_while_running``) waits out of the due set until a run of its ends.
    Schedulers wake each other through pub/sub when jobs change. The register of the
    schedulers sharing the prefix is a hash of their records (``{prefix}:schedulers``)
    beside a sorted set of them by expiry (``{prefix}:heartbeats``), which a heartbeat
    reads to drop the stale ones; the leases each holds are counted when the register is
    read. Every key starts with ``prefix``; see docs/store-redis.md for the layout.

    Runs on the asyncio backend only: redis-py's asyncio client does not run on trio.

    Args:
        url_or_client: a Redis URL (``redis://host:6379/0``, ``rediss://...``,
            ``unix:///path``), for which the store opens a client when it starts and
            closes it when it stops; or a ``redis.asyncio.Redis`` client, which the store
            uses and never closes.
        prefix: the start of every key name (``{prefix}:due``, ``{prefix}:job:<id>``...).
            Schedulers share jobs when they use the same server and prefix.
        serializer: how arguments and results are stored; ``JSONSerializer()`` by default.
        run_retention: how many finished runs to keep per job.

    Raises:
        ImportError: redis-py is not installed (``pip install horae[redis]``).
        ValueError: ``url_or_client`` is not a Redis URL, or ``prefix`` is empty.
        TypeError: ``url_or_client`` is neither a URL nor a ``redis.asyncio.Redis``.
        JobArgumentError: ``run_retention`` is not a whole number >= 0.

    Example::

        from horae import AsyncScheduler
        from horae.stores.redis import RedisStore

        async with AsyncScheduler(RedisStore("redis://localhost:6379/0")) as scheduler:
            await scheduler.add_job("myapp.tasks:cleanup", "cron", hour=3, id="cleanup")
    """

    def __init__(
        self,
        url_or_client: str | Redis,
        *,
        prefix: str = "horae",
        serializer: Serializer | None = None,
        run_retention: int = 100,
    ) -> None:
        redis_asyncio, self._errors = _import_redis()
        if isinstance(url_or_client, str):
            try:
                redis_asyncio.connection.parse_url(url_or_client)
            except ValueError as exc:
                raise ValueError(
                    f"url_or_client: {url_or_client!r} is not a Redis URL: {exc}"
                ) from None
            self._url: str | None = url_or_client
            self._client: Redis | None = None
        elif isinstance(url_or_client, redis_asyncio.Redis):
            self._url = None
            self._client = url_or_client
        else:
            raise TypeError(
                f"url_or_client: {url_or_client!r} is neither a Redis URL "
                "('redis://host:6379/0') nor a redis.asyncio.Redis client"
            )
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix: {prefix!r} is not allowed; give a non-empty string")
        self._prefix = prefix
        self._serializer = _options.serializer(serializer)
        self._left_out = LeftOut(logger)
        self._run_retention = _options.run_retention(run_retention)
        self._retention_arg = str(run_retention)
        self._due = f"{prefix}:due"
        self._jobs = f"{prefix}:jobs"
        self._leases = f"{prefix}:leases"
        self._token = f"{prefix}:token"
        self._run_leases = f"{prefix}:runleases"
        self._run_holders = f"{prefix}:runholders"
        self._held = f"{prefix}:held"
        self._schedulers = f"{prefix}:schedulers"
        self._heartbeats = f"{prefix}:heartbeats"
        self._release_keys = (
            self._due,
            self._leases,
            self._jobs,
            self._run_leases,
            self._run_holders,
            self._held,
        )
        self._finish_keys = (
            self._run_leases,
            self._run_holders,
            self._due,
            self._held,
            self._jobs,
        )
        self._version = f"{prefix}:version"
        self._channel = f"{prefix}:wakeup"
        self._events_channel = f"{prefix}:events"
        # Identifies this store's own wake-up messages, which it ignores: its scheduler
        # knows about its own changes.
        self._sender = uuid.uuid4().hex
        self._context: StoreContext | None = None
        self._listener: asyncio.Task[None] | None = None
        self._finishing: _FinishBatch | None = None
        self._finish_lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"RedisStore({self._where()!r}, prefix={self._prefix!r})"

    def _where(self) -> str:
        if self._url is not None:
            # Logs and error messages carry the repr: never the password.
            parts = urlsplit(self._url)
            if parts.password is None:
                return self._url
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
        assert self._client is not None
        kwargs = self._client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
        return f"<client of {kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}>"

    # ------------------------------------------------------------------ lifecycle

    async def start(self, context: StoreContext) -> None:
        """Connect, check or write the key layout version (upgrading versions 1 and 2
        in place), load the scripts, and start listening for other schedulers' wake-ups.

        Raises:
            StoreError: on trio (use the asyncio backend), when Redis cannot be reached,
                or when the keys under the prefix have a layout this horae does not know.
        """
        if self._listener is not None:
            raise StoreError(f"{self!r} is started already; stop() it first")
        backend = _current_backend()
        if backend != "asyncio":
            raise StoreError(
                f"RedisStore needs the asyncio backend; this is {backend}. redis-py's "
                "asyncio client does not run on trio: run the scheduler with "
                "anyio.run(..., backend='asyncio'), or use SQLiteStore or PostgresStore"
            )
        if self._url is not None:
            # Made here, in the running event loop, and closed by stop().
            redis_asyncio, _ = _import_redis()
            self._client = redis_asyncio.Redis.from_url(self._url)
        try:
            await self._prepare()
            pubsub = await self._subscribe()
        except BaseException:
            await self._close_client()
            raise
        self._context = context
        # Owner of the listener: this store; stop() cancels it and waits for it. An asyncio
        # task rather than a task group entered here, because a task group's scope would
        # force stop() to run in the task that ran start(), in the reverse order of other
        # stores' starts; redis-py ties the store to asyncio anyway.
        listener = asyncio.create_task(self._listen(pubsub), name=f"horae listener {self!r}")
        listener.add_done_callback(self._listener_done)
        self._listener = listener

    async def stop(self) -> None:
        """Stop listening and close the client the store opened (not one given to it)."""
        listener, self._listener = self._listener, None
        self._context = None
        if listener is not None:
            listener.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait([listener])
        await self._close_client()

    async def _close_client(self) -> None:
        if self._url is None:
            return  # the user's client: theirs to close
        client, self._client = self._client, None
        if client is not None:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    def _listener_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            # It only ends by cancellation: anything else is a bug to see at once.
            logger.error(
                "%r: the wake-up listener failed; changes made by other schedulers are "
                "seen at the next due time only",
                self,
                exc_info=task.exception(),
            )

    async def _prepare(self) -> None:
        client = self._started_client()
        try:
            async with client.pipeline(transaction=False) as pipe:
                # SET NX: several processes starting at once agree on one version.
                pipe.set(self._version, str(LAYOUT_VERSION), nx=True)
                pipe.get(self._version)
                for script in _SCRIPTS:
                    pipe.script_load(script.text)
                replies = await pipe.execute()
        except self._errors.RedisError as exc:
            raise StoreError(f"{self!r}: cannot prepare the store ({exc})") from exc
        version = _text(replies[1])
        if version == "1":
            await self._upgrade()
            version = "2"
        if version == "2":
            await self._upgrade_to_3()
        elif version != str(LAYOUT_VERSION):
            raise StoreError(
                f"{self!r}: the keys under prefix {self._prefix!r} have layout version "
                f"{version}, and this horae knows version {LAYOUT_VERSION}; upgrade horae, "
                "or use another prefix (docs/store-redis.md describes the upgrade path)"
            )

    async def _upgrade(self) -> None:
        # Layout 1 had no leases of in-flight runs: index the runs it left in flight, as
        # expired (see _redis_lua.UPGRADE). The in-flight runs of removed jobs are found
        # by their key names only, hence the SCAN; it runs once per prefix.
        client = self._started_client()
        pattern = "".join(f"\\{c}" if c in "\\*?[]" else c for c in self._prefix)
        start = len(self._prefix) + len(":inflight:")
        try:
            job_ids = [
                _text(key)[start:]
                async for key in client.scan_iter(match=f"{pattern}:inflight:*", count=1000)
            ]
            keys = (self._version, self._run_leases, self._run_holders)
            indexed = await client.eval(_UPGRADE.text, len(keys), *keys, self._prefix, *job_ids)
        except self._errors.RedisError as exc:
            raise StoreError(f"{self!r}: cannot upgrade the key layout to 2 ({exc})") from exc
        if int(indexed) >= 0:
            logger.info(
                "%r: upgraded the key layout from version 1 to 2; %d run(s) that were in "
                "flight can be claimed as abandoned now",
                self,
                int(indexed),
            )

    async def _upgrade_to_3(self) -> None:
        # Layout 3 added fields and a set that layout 2 never had: a missing run count
        # is 0, and nothing is held. Only the version changes (see _redis_lua.UPGRADE_3).
        client = self._started_client()
        try:
            changed = await client.eval(_UPGRADE_3.text, 1, self._version)
        except self._errors.RedisError as exc:
            raise StoreError(f"{self!r}: cannot upgrade the key layout to 3 ({exc})") from exc
        if int(changed) >= 0:
            logger.info("%r: upgraded the key layout from version 2 to 3", self)

    async def _subscribe(self) -> PubSub:
        pubsub = self._started_client().pubsub()
        try:
            await pubsub.subscribe(self._channel, self._events_channel)
            confirmed = 0
            while True:
                # Only once the server confirms is no wake-up missed.
                message = await pubsub.get_message(timeout=10.0)
                if message is None:
                    raise self._errors.TimeoutError("no reply to SUBSCRIBE within 10 s")
                if _text(message["type"]) == "subscribe":
                    confirmed += 1
                    if confirmed == 2:
                        return pubsub
        except BaseException as exc:
            await self._close_pubsub(pubsub)
            if isinstance(exc, self._errors.RedisError):
                raise StoreError(f"{self!r}: cannot subscribe to wake-ups ({exc})") from exc
            raise

    async def _close_pubsub(self, pubsub: PubSub) -> None:
        # The connection may be gone already: then there is nothing left to close.
        # (PubSub.aclose is annotated in recent redis-py, 8.2 here, not in older ones.)
        with anyio.CancelScope(shield=True), suppress(self._errors.RedisError):
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    async def _listen(self, pubsub: PubSub) -> None:
        failures = 0
        sender = self._sender
        while True:
            try:
                while True:
                    # A timeout of our own, not the client's socket_timeout: wait long.
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=60)
                    if message is None:
                        continue
                    try:
                        if _text(message["channel"]) == self._events_channel:
                            self._deliver(message["data"])
                        elif _text(message["data"]) != sender:
                            self._wake()
                    except Exception:
                        # One bad message must not end the listener (and with it every
                        # later wake-up and shared event).
                        logger.exception("%r: could not handle a pub/sub message", self)
            except self._errors.RedisError as exc:
                if failures == 0:
                    # One line per outage, not per retry.
                    logger.warning(
                        "%r: lost the pub/sub connection (%s); until it is back, other "
                        "schedulers' changes are seen at the next due time",
                        self,
                        exc,
                    )
            await self._close_pubsub(pubsub)
            while True:
                failures += 1
                await anyio.sleep(min(0.05 * 2**failures, 5.0))
                try:
                    pubsub = await self._subscribe()
                except StoreError:
                    continue
                break
            logger.info("%r: listening for wake-ups again", self)
            failures = 0
            # Messages sent while the connection was down are lost: look again.
            self._wake()

    def _deliver(self, data: str | bytes) -> None:
        context = self._context
        if context is None:
            return
        text = _text(data)
        if self._sender in text[:80]:
            return  # our own (checked before decoding: the sender leads the message)
        sender, events = unpack(text, self._serializer)
        if sender == self._sender:
            return
        for event in events:
            context.publish(event)

    def _wake(self) -> None:
        context = self._context
        if context is not None:
            context.wakeup()

    # ------------------------------------------------------------------ helpers

    def _started_client(self) -> Redis:
        client = self._client
        if client is None:
            raise StoreError(f"{self!r} is not started; start() it (the scheduler does)")
        return client

    async def _eval(self, script: _Script, keys: Sequence[str], args: Sequence[str]) -> Any:
        client = self._started_client()
        errors = self._errors
        try:
            try:
                return await client.evalsha(script.sha, len(keys), *keys, *args)
            except errors.NoScriptError:
                # SCRIPT FLUSH or a server restart dropped it: load it again, once.
                await client.script_load(script.text)
                return await client.evalsha(script.sha, len(keys), *keys, *args)
        except errors.RedisError as exc:
            raise StoreError(f"{self!r}: the {script.name} script failed ({exc})") from exc

    def _decode_job(self, job_id: str, nrt: str | bytes, payload: str | bytes) -> Job:
        next_run_time = _moment(nrt) if nrt else None
        return decode_job(job_id, next_run_time, payload, self._serializer)

    def _encode_run(self, run: Run) -> str:
        record = encode_run(run, self._serializer)
        started_at, finished_at = record.started_at, record.finished_at
        return _dumps(
            {
                # First: the FINISH script finds a run in the history by this head.
                "id": record.id,
                "job_id": record.job_id,
                "scheduled_time": record.scheduled_time.isoformat(),
                "started_at": None if started_at is None else started_at.isoformat(),
                "finished_at": None if finished_at is None else finished_at.isoformat(),
                "outcome": record.outcome,
                "result": record.result,
                "error": record.error,
                "scheduler_id": record.scheduler_id,
                "attempt": record.attempt,
                "coalesced": record.coalesced,
            }
        )

    def _decode_run(self, text: str | bytes) -> Run:
        values = json.loads(text)
        for name in _RUN_TIMES:
            if values[name] is not None:
                values[name] = datetime.fromisoformat(values[name])
        return decode_run(RunRecord(**values), self._serializer)

    def _decode_listed_runs(self, texts: Sequence[str | bytes]) -> list[Run]:
        # A listing for tools shows what it can: one unreadable record is logged and
        # left out rather than failing the page.
        runs: list[Run] = []
        for text in texts:
            try:
                runs.append(self._decode_run(text))
            except Exception as exc:
                logger.error("%r: a run is left out of a listing (%r): %.200r", self, exc, text)
        return runs

    # ------------------------------------------------------------------ jobs

    async def add_jobs(self, jobs: Sequence[Job], *, replace: bool) -> None:
        """Add jobs, all or none; an existing id is replaced only with ``replace``.

        Raises:
            ConflictingIdError: an id exists already or comes twice in ``jobs``.
            InvalidCallableError, SerializationError: a job cannot be stored (nothing is
                written then).
        """
        args = [self._prefix, self._sender, "1" if replace else "0"]
        seen: set[str] = set()
        for job in jobs:
            if not replace and job.id in seen:
                raise ConflictingIdError(job.id)
            seen.add(job.id)
            nrt = "" if job.next_run_time is None else _us(job.next_run_time)
            args += (job.id, nrt, encode_job(job, self._serializer))
        if not jobs:
            return
        conflict = await self._eval(_ADD, (self._due, self._jobs, self._held), args)
        if conflict is not None:
            raise ConflictingIdError(_text(conflict))

    async def get_job(self, job_id: str) -> Job:
        """The job with that id.

        Raises:
            JobLookupError: there is no such job.
            DeserializationError: the stored job cannot be read back.
        """
        client = self._started_client()
        try:
            nrt, payload = await client.hmget(f"{self._prefix}:job:{job_id}", ["nrt", "payload"])
        except self._errors.RedisError as exc:
            raise StoreError(f"{self!r}: cannot read job {job_id!r} ({exc})") from exc
        if nrt is None:
            raise JobLookupError(job_id)
        return self._decode_job(job_id, nrt, payload if payload is not None else "")

    async def get_jobs(self) -> list[Job]:
        """Every readable job, by next run time, paused jobs last; jobs that cannot be
        read back are logged and left out (and left in Redis)."""
        reply = await self._eval(_LIST, (self._jobs,), (self._prefix,))
        entries: list[tuple[bool, int, str, Job]] = []
        for i in range(0, len(reply), 3):
            job_id, nrt = _text(reply[i]), _text(reply[i + 1])
            try:
                job = self._decode_job(job_id, nrt, reply[i + 2])
            except Exception as exc:
                self._left_out.report(self, job_id, exc)
                continue
            entries.append((not nrt, int(nrt) if nrt else 0, job_id, job))
        entries.sort(key=lambda entry: entry[:3])
        return [entry[3] for entry in entries]

    async def get_job_ids(self) -> list[str]:
        """Every job id, sorted, unreadable jobs' too: the members of ``{prefix}:jobs``,
        in one script call that reads no job."""
        ids: list[str] = json.loads(await self._eval(_JOB_IDS, (self._jobs,), ()))
        ids.sort()
        return ids

    async def update_job(self, job: Job) -> None:
        """Replace the stored job of the same id.

        Raises:
            JobLookupError: there is no such job.
        """
        nrt = "" if job.next_run_time is None else _us(job.next_run_time)
        args = (self._prefix, self._sender, job.id, nrt, encode_job(job, self._serializer))
        if not await self._eval(_UPDATE, (self._due, self._held), args):
            raise JobLookupError(job.id)

    async def remove_job(self, job_id: str) -> None:
        """Remove a job (its run history stays readable).

        Raises:
            JobLookupError: there is no such job.
        """
        args = (self._prefix, self._sender, job_id)
        if not await self._eval(_REMOVE, (self._due, self._jobs, self._held), args):
            raise JobLookupError(job_id)

    async def remove_all_jobs(self) -> None:
        """Remove every job."""
        keys = (self._due, self._jobs, self._held)
        await self._eval(_REMOVE_ALL, keys, (self._prefix, self._sender))

    async def next_run_time(self) -> datetime | None:
        """The earliest next run time of a job neither leased nor held, or the earliest
        lease expiry if sooner (when a crashed scheduler's job can be taken over)."""
        client = self._started_client()
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.zrange(self._due, 0, 0, withscores=True)
                pipe.zrange(self._leases, 0, 0, withscores=True)
                due, leases = await pipe.execute()
        except self._errors.RedisError as exc:
            raise StoreError(f"{self!r}: cannot read the next run time ({exc})") from exc
        times = [int(score) for _, score in (*due, *leases)]
        return _moment(str(min(times))) if times else None

    # ------------------------------------------------------------------ leases

    async def acquire_jobs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> list[Lease]:
        """Lease up to ``limit`` due jobs, earliest first, in one script call."""
        expires = now + timedelta(seconds=lease_duration)
        args = (self._prefix, _us(now), _us(expires), str(limit), scheduler_id)
        reply = await self._eval(_ACQUIRE, (self._due, self._leases, self._token), args)
        leases: list[Lease] = []
        for job_id, payload, nrt, token, running, run_count in json.loads(reply):
            job: Job | None
            error: Exception | None = None
            try:
                job = self._decode_job(job_id, nrt, payload)
            except Exception as exc:
                # The scheduler reports it and backs it off; the job stays stored.
                job, error = None, exc
            leases.append(
                Lease(
                    job_id=job_id,
                    job=job,
                    scheduler_id=scheduler_id,
                    expires_at=expires,
                    token=int(token),
                    running=int(running),
                    run_count=int(run_count),
                    error=error,
                )
            )
        return leases

    async def release_jobs(self, scheduler_id: str, releases: Sequence[Release]) -> set[str]:
        """Give leased jobs back and record their runs, in one script call; returns the
        ids of releases whose lease was no longer held (nothing of those is written).

        A job released with ``hold_while_running`` whose runs in flight fill it is held
        in the same script that counts them, so no finish can slip in between."""
        if not releases:
            return set()
        encode = self._encode_run
        batch = [
            [
                release.lease.job_id,
                str(release.lease.token),
                "" if release.next_run_time is None else _us(release.next_run_time),
                1 if release.remove else 0,
                [[str(run.id), encode(run)] for run in release.started],
                [encode(run) for run in release.finished],
                release.hold_while_running,
            ]
            for release in releases
        ]
        args = (self._prefix, self._sender, self._retention_arg, _dumps(batch), scheduler_id)
        rejected = await self._eval(_RELEASE, self._release_keys, args)
        return {_text(job_id) for job_id in rejected}

    # ------------------------------------------------------------------ runs

    async def finish_run(
        self,
        run: Run,
        *,
        retry: Run | None = None,
        expires_at: datetime | None = None,
        remove_finished_job: bool = False,
    ) -> bool:
        """Record a finished run; it no longer counts for max_instances, unless ``retry``
        (an attempt of the same job) takes its place in flight, held by
        ``retry.scheduler_id`` until ``expires_at`` (see :meth:`Store.finish_run`).
        With ``remove_finished_job``, a job left with nothing to do is removed in the
        same script call; returns whether it was.

        Runs that end while another batch of outcomes is being written (or in the same
        event loop turn) are written together, in one script call: a group commit.
        A run that leaves flight without a retry frees its job if it was held, and the
        other schedulers sharing the prefix are woken (through ``{prefix}:wakeup``).

        Raises:
            ValueError: ``retry`` without ``expires_at``.
        """
        entry: list[Any] = [run.job_id, str(run.id), self._encode_run(run)]
        remove = remove_finished_job and retry is None
        if retry is not None:
            if expires_at is None:
                raise ValueError("finish_run: a retry needs expires_at, the end of its lease")
            entry.append(
                [str(retry.id), self._encode_run(retry), retry.scheduler_id, _us(expires_at)]
            )
        elif remove:
            entry += [False, 1]
        batch = self._finishing
        if batch is not None:
            batch.runs.append(entry)
            await batch.done.wait()
            if batch.error is not None:
                raise StoreError(str(batch.error)) from batch.error
            return remove and batch.took_removal(run.job_id)
        batch = self._finishing = _FinishBatch()
        batch.runs.append(entry)
        try:
            # Shielded: the batch holds other runs' outcomes, which must not be lost
            # because this caller was cancelled.
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()  # let runs ending now join the batch
                async with self._finish_lock:  # ... and those ending while one is written
                    self._finishing = None
                    args = (self._prefix, self._retention_arg, _dumps(batch.runs), self._sender)
                    batch.removed = await self._eval(_FINISH, self._finish_keys, args)
        except BaseException as exc:
            batch.error = exc
            raise
        finally:
            if self._finishing is batch:
                self._finishing = None
            batch.done.set()
        return remove and batch.took_removal(run.job_id)

    async def remove_job_if_idle(self, job_id: str) -> bool:
        """Remove the job if nothing of it is left to happen, in one script call (the
        removal of :meth:`finish_run`'s ``remove_finished_job``); return whether it was.
        """
        args = (self._prefix, self._sender, job_id)
        return bool(await self._eval(_REMOVE_IDLE, (self._due, self._jobs, self._held), args))

    async def extend_runs(
        self, scheduler_id: str, run_ids: Sequence[UUID], expires_at: datetime
    ) -> set[UUID]:
        """Renew the leases of the in-flight runs ``scheduler_id`` holds, in one script
        call; returns the ids among ``run_ids`` it does not hold (any more)."""
        if not run_ids:
            return set()
        args = (scheduler_id, _us(expires_at), *map(str, run_ids))
        lost = await self._eval(_EXTEND, (self._run_leases, self._run_holders), args)
        return {UUID(_text(run_id)) for run_id in lost}

    async def claim_expired_runs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> list[Run]:
        """Take over up to ``limit`` in-flight runs whose lease expired, oldest lease
        first, in one script call (each run goes to exactly one claimer).

        A claimed run whose record cannot be read back is logged and left out; it stays
        held by ``scheduler_id`` until that lease expires, and is claimed again then.
        """
        if limit <= 0:
            return []
        expires = now + timedelta(seconds=lease_duration)
        args = (self._prefix, scheduler_id, _us(now), _us(expires), str(limit))
        texts = await self._eval(_CLAIM, (self._run_leases, self._run_holders), args)
        runs: list[Run] = []
        for text in texts:
            try:
                runs.append(self._decode_run(text))
            except Exception as exc:
                logger.error("%r: cannot read back a claimed run (%s): %.200r", self, exc, text)
        return runs

    async def broadcast(self, events: Sequence[Event]) -> None:
        """Send events to the other schedulers: one ``PUBLISH`` on ``{prefix}:events``
        per batch. Schedulers whose pub/sub connection is down meanwhile miss them."""
        for message in pack(self._sender, events, self._serializer):
            try:
                await self._started_client().publish(self._events_channel, message)
            except self._errors.RedisError as exc:
                raise StoreError(f"{self!r}: cannot publish events ({exc})") from exc

    async def get_runs(self, job_id: str, limit: int = 100) -> list[Run]:
        """In-flight runs first, then finished ones, newest first."""
        client = self._started_client()
        if limit <= 0:
            return []
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hvals(f"{self._prefix}:inflight:{job_id}")
                pipe.lrange(f"{self._prefix}:runs:{job_id}", 0, limit - 1)
                in_flight_texts, finished_texts = await pipe.execute()
        except self._errors.RedisError as exc:
            raise StoreError(f"{self!r}: cannot read the runs of {job_id!r} ({exc})") from exc
        in_flight = [self._decode_run(text) for text in in_flight_texts]
        in_flight.sort(key=lambda run: run.scheduled_time, reverse=True)
        finished = [self._decode_run(text) for text in finished_texts]
        return (in_flight + finished)[:limit]

    async def get_latest_runs(self, job_ids: Sequence[str]) -> dict[str, Run]:
        """Each job's in-flight run scheduled last, else its newest finished run, in one
        script call per ``_LATEST_CHUNK`` ids (a script holds the server: a long page of
        jobs must not stall every scheduler's acquisitions); removed jobs' runs too, as
        get_runs reads them. A run that cannot be read back is logged and left out."""
        wanted = list(dict.fromkeys(job_ids))
        if not wanted:
            return {}
        reply: list[Any] = []
        for start in range(0, len(wanted), _LATEST_CHUNK):
            chunk = wanted[start : start + _LATEST_CHUNK]
            reply.extend(await self._eval(_LATEST, (), (self._prefix, *chunk)))
        latest: dict[str, Run] = {}
        i = 0
        while i < len(reply):
            job_id, count = _text(reply[i]), int(reply[i + 1])
            end = i + 2 + max(count, 1)
            runs = self._decode_listed_runs(reply[i + 2 : end])
            i = end
            if runs:
                # max() keeps the first of equal times: get_runs' stable sort does too.
                latest[job_id] = max(runs, key=lambda run: run.scheduled_time)
        return latest

    async def get_runs_in_flight(self, limit: int = 1000) -> list[Run]:
        """The runs in flight of every job, removed jobs' too, by scheduled time then
        id, in one script call. It reads the in-flight runs only, every one of them:
        the stored times do not sort on the server (see ``_redis_lua.IN_FLIGHT``). A run
        that cannot be read back is logged and left out."""
        if limit <= 0:
            return []
        texts = await self._eval(_IN_FLIGHT, (self._run_holders,), (self._prefix,))
        runs = self._decode_listed_runs(texts)
        runs.sort(key=lambda run: (run.scheduled_time, str(run.id)))
        return runs[:limit]

    # ------------------------------------------------------------------ schedulers

    async def heartbeat(self, info: SchedulerInfo) -> None:
        """Write the scheduler's record, dropping the records that expired more than
        ``SCHEDULER_RECORD_KEEP`` seconds before ``info.heartbeat_at``, in one script
        call. Publishes no wake-up: no job changed."""
        record = _dumps(
            {
                "host": info.host,
                "pid": info.pid,
                "started_at": _us(info.started_at),
                "heartbeat_at": _us(info.heartbeat_at),
                "expires_at": _us(info.expires_at),
                "state": info.state,
                "version": info.version,
            }
        )
        cutoff = info.heartbeat_at - timedelta(seconds=SCHEDULER_RECORD_KEEP)
        args = (info.id, record, _us(info.expires_at), _us(cutoff))
        await self._eval(_HEARTBEAT, (self._schedulers, self._heartbeats), args)

    async def remove_scheduler(self, scheduler_id: str) -> None:
        """Delete the scheduler's record (one ``MULTI``); nothing happens if there is none."""
        client = self._started_client()
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._schedulers, scheduler_id)
                pipe.zrem(self._heartbeats, scheduler_id)
                await pipe.execute()
        except self._errors.RedisError as exc:
            raise StoreError(
                f"{self!r}: cannot remove the record of scheduler {scheduler_id!r} ({exc})"
            ) from exc

    async def get_schedulers(self, now: datetime) -> list[SchedulerInfo]:
        """Every scheduler record, by id, with the job leases and in-flight runs each
        holds at ``now``, in one script call; it reads the leases held now, not every job
        or run. A record that cannot be read back is logged and left out."""
        keys = (self._schedulers, self._leases, self._run_leases, self._run_holders)
        reply = await self._eval(_SCHEDULERS, keys, (self._prefix, _us(now)))
        infos: list[SchedulerInfo] = []
        for i in range(0, len(reply), 4):
            scheduler_id = _text(reply[i])
            try:
                values = json.loads(reply[i + 1])
                info = SchedulerInfo(
                    id=scheduler_id,
                    host=values["host"],
                    pid=values["pid"],
                    started_at=_moment(values["started_at"]),
                    heartbeat_at=_moment(values["heartbeat_at"]),
                    expires_at=_moment(values["expires_at"]),
                    state=values["state"],
                    version=values["version"],
                    job_leases=int(reply[i + 2]),
                    run_leases=int(reply[i + 3]),
                )
            except (ValueError, TypeError, KeyError, OverflowError) as exc:
                logger.error(
                    "%r: the record of scheduler %r is left out of get_schedulers(): %r",
                    self,
                    scheduler_id,
                    exc,
                )
                continue
            infos.append(info)
        infos.sort(key=lambda info: info.id)
        return infos


class _FinishBatch:
    __slots__ = ("done", "error", "removed", "runs")

    def __init__(self) -> None:
        self.runs: list[list[Any]] = []
        self.done = anyio.Event()
        self.error: BaseException | None = None
        # The ids of the jobs the script removed (see Store.finish_run's
        # remove_finished_job), as it returned them.
        self.removed: list[str | bytes] = []

    def took_removal(self, job_id: str) -> bool:
        """Whether the script removed ``job_id``; only the first caller asking is told so
        (two runs of the job in the batch, both asking for the removal)."""
        for i, removed in enumerate(self.removed):
            if _text(removed) == job_id:
                del self.removed[i]
                return True
        return False


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _current_backend() -> str:
    try:
        import sniffio
    except ImportError:
        return "asyncio"  # trio needs sniffio: without it, this is asyncio
    try:
        return sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return "no async library"
