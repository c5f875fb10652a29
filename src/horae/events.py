"""Events: immutable records of what happened, and their fan-out to listeners and streams.

Each event class has a ``code`` bit (the APScheduler 3 values), so that listeners
registered with a mask, ``add_listener(callback, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)``,
and checks such as ``event.code == EVENT_JOB_ERROR`` work as they did there.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar
from uuid import UUID

import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

logger = logging.getLogger(__name__)

EVENT_SCHEDULER_STARTED = EVENT_SCHEDULER_START = 1 << 0
EVENT_SCHEDULER_SHUTDOWN = 1 << 1
EVENT_SCHEDULER_PAUSED = 1 << 2
EVENT_SCHEDULER_RESUMED = 1 << 3
EVENT_EXECUTOR_ADDED = 1 << 4
EVENT_EXECUTOR_REMOVED = 1 << 5
EVENT_JOBSTORE_ADDED = 1 << 6
EVENT_JOBSTORE_REMOVED = 1 << 7
EVENT_ALL_JOBS_REMOVED = 1 << 8
EVENT_JOB_ADDED = 1 << 9
EVENT_JOB_REMOVED = 1 << 10
EVENT_JOB_MODIFIED = 1 << 11
EVENT_JOB_EXECUTED = 1 << 12
EVENT_JOB_ERROR = 1 << 13
EVENT_JOB_MISSED = 1 << 14
EVENT_JOB_SUBMITTED = 1 << 15
EVENT_JOB_MAX_INSTANCES = 1 << 16
EVENT_JOB_ABANDONED = 1 << 17
EVENT_JOB_TIMEOUT = 1 << 18
EVENT_STORE_ERROR = 1 << 19
EVENT_STORE_RECOVERED = 1 << 20
EVENT_JOB_CANCELLED = 1 << 21
EVENT_JOB_CANCEL_REQUESTED = 1 << 22
EVENT_ALL = (1 << 23) - 1

#: The events that travel between schedulers sharing a store (``share_events``): what
#: happened to jobs and to their runs. Scheduler life-cycle events stay local.
EVENT_SHARED = (
    EVENT_JOB_ADDED
    | EVENT_JOB_REMOVED
    | EVENT_JOB_MODIFIED
    | EVENT_ALL_JOBS_REMOVED
    | EVENT_JOB_SUBMITTED
    | EVENT_JOB_EXECUTED
    | EVENT_JOB_ERROR
    | EVENT_JOB_MISSED
    | EVENT_JOB_MAX_INSTANCES
    | EVENT_JOB_TIMEOUT
    | EVENT_JOB_ABANDONED
    | EVENT_JOB_CANCELLED
)


@attrs.frozen(kw_only=True)
class Event:
    """Base class of every event.

    Attributes:
        timestamp: when it happened (the clock of the scheduler where it happened).
        origin: the id of the scheduler where it happened. Events that other schedulers
            sharing the store send (see ``AsyncScheduler(share_events=...)``) keep their
            origin: ``event.origin != scheduler.id`` tells a remote event from a local one.
    """

    code: ClassVar[int] = 0
    timestamp: datetime
    origin: str | None = None


@attrs.frozen(kw_only=True)
class SchedulerEvent(Event):
    """Something happened to a scheduler."""

    scheduler_id: str


@attrs.frozen(kw_only=True)
class SchedulerStarted(SchedulerEvent):
    """The scheduler started."""

    code: ClassVar[int] = EVENT_SCHEDULER_STARTED


@attrs.frozen(kw_only=True)
class SchedulerStopped(SchedulerEvent):
    """The scheduler stopped (``EVENT_SCHEDULER_SHUTDOWN``)."""

    code: ClassVar[int] = EVENT_SCHEDULER_SHUTDOWN


@attrs.frozen(kw_only=True)
class SchedulerPaused(SchedulerEvent):
    """The scheduler was paused: it runs nothing until resumed."""

    code: ClassVar[int] = EVENT_SCHEDULER_PAUSED


@attrs.frozen(kw_only=True)
class SchedulerResumed(SchedulerEvent):
    """The scheduler was resumed."""

    code: ClassVar[int] = EVENT_SCHEDULER_RESUMED


@attrs.frozen(kw_only=True)
class StoreFailed(SchedulerEvent):
    """The scheduler lost its store (``EVENT_STORE_ERROR``): a call failed.

    Sent once per outage, when the first call fails; the scheduler keeps retrying with
    a capped backoff, runs already executing go on, and :class:`StoreRecovered` follows
    when a call succeeds again. (The exception stores raise is ``horae.StoreError``;
    this event has another name so that the two never shadow each other.)

    Attributes:
        error: what failed, as text.
        exception: the exception (not sent to other processes).
    """

    code: ClassVar[int] = EVENT_STORE_ERROR
    error: str = ""
    exception: BaseException | None = attrs.field(default=None, eq=False)


@attrs.frozen(kw_only=True)
class StoreRecovered(SchedulerEvent):
    """The store answers again after a :class:`StoreFailed` (``EVENT_STORE_RECOVERED``).

    Attributes:
        downtime: how long the outage lasted, as the scheduler saw it.
    """

    code: ClassVar[int] = EVENT_STORE_RECOVERED
    downtime: timedelta = timedelta(0)


@attrs.frozen(kw_only=True)
class JobEvent(Event):
    """Something happened to a job."""

    job_id: str


@attrs.frozen(kw_only=True)
class JobAdded(JobEvent):
    """A job was added.

    Attributes:
        actor: who added it, as the caller of ``add_job`` or ``add_jobs`` named it (see
            :class:`JobModified`); ``""`` when not named.
    """

    code: ClassVar[int] = EVENT_JOB_ADDED
    actor: str = ""


@attrs.frozen(kw_only=True)
class JobModified(JobEvent):
    """A job was changed (options, trigger, paused or resumed).

    Attributes:
        actor: who or what made the change, as the caller of the verb named it
            (``"dashboard 10.0.0.7"``, ``"cli alice@host"``); ``""`` when not named,
            ``"horae"`` when the scheduler itself did it (``pause_after_failures``).
    """

    code: ClassVar[int] = EVENT_JOB_MODIFIED
    actor: str = ""


@attrs.frozen(kw_only=True)
class JobRemoved(JobEvent):
    """A job was removed (by the user, or because its trigger has no more fire times).

    Attributes:
        actor: who removed it, as the caller of ``remove_job`` named it (see
            :class:`JobModified`); ``""`` when not named or when its trigger ended.
    """

    code: ClassVar[int] = EVENT_JOB_REMOVED
    actor: str = ""


@attrs.frozen(kw_only=True)
class AllJobsRemoved(Event):
    """``remove_all_jobs()`` was called.

    Attributes:
        actor: who called it, as they named themselves (see :class:`JobModified`).
    """

    code: ClassVar[int] = EVENT_ALL_JOBS_REMOVED
    actor: str = ""


@attrs.frozen(kw_only=True)
class RunEvent(JobEvent):
    """Something happened to one fire time of a job.

    Attributes:
        run_id: the :class:`~horae.Run`'s id.
        scheduled_time: the fire time.
    """

    run_id: UUID
    scheduled_time: datetime

    @property
    def scheduled_run_time(self) -> datetime:
        """The fire time, under APScheduler 3's name."""
        return self.scheduled_time


@attrs.frozen(kw_only=True)
class JobSubmitted(RunEvent):
    """A run was handed to an executor.

    Attributes:
        coalesced: how many earlier fire times this run covers (``coalesce=True``).
    """

    code: ClassVar[int] = EVENT_JOB_SUBMITTED
    coalesced: int = 0


@attrs.frozen(kw_only=True)
class JobExecuted(RunEvent):
    """A run finished and the callable returned ``result``."""

    code: ClassVar[int] = EVENT_JOB_EXECUTED
    result: Any = None

    @property
    def retval(self) -> Any:
        """The return value, under APScheduler 3's name."""
        return self.result


@attrs.frozen(kw_only=True)
class JobError(RunEvent):
    """A run raised ``exception``; ``traceback`` is its formatted text.

    Also published, with ``run_id`` of a run that never started, when a job could not be
    run at all (its trigger raised, its callable could not be imported).
    """

    code: ClassVar[int] = EVENT_JOB_ERROR
    exception: BaseException | None = attrs.field(default=None, eq=False)
    traceback: str = ""


@attrs.frozen(kw_only=True)
class JobTimedOut(RunEvent):
    """A run exceeded its job's ``timeout`` and was cancelled."""

    code: ClassVar[int] = EVENT_JOB_TIMEOUT


@attrs.frozen(kw_only=True)
class JobMissed(RunEvent):
    """A fire time could not start within ``misfire_grace_time``."""

    code: ClassVar[int] = EVENT_JOB_MISSED
    coalesced: int = 0


@attrs.frozen(kw_only=True)
class JobAbandoned(RunEvent):
    """A run was given up: its scheduler stopped without waiting for it, or died.

    Attributes:
        reason: what happened, in words.
    """

    code: ClassVar[int] = EVENT_JOB_ABANDONED
    reason: str = ""


@attrs.frozen(kw_only=True)
class JobSkipped(RunEvent):
    """A fire time was skipped: the job had ``max_instances`` runs going already."""

    code: ClassVar[int] = EVENT_JOB_MAX_INSTANCES


@attrs.frozen(kw_only=True)
class JobCancelled(RunEvent):
    """A run was cancelled by a newer fire time of its job (``overlap="cancel_other"``).

    Attributes:
        reason: what cancelled it, in words.
    """

    code: ClassVar[int] = EVENT_JOB_CANCELLED
    reason: str = ""


@attrs.frozen(kw_only=True)
class JobCancelRequested(JobEvent):
    """A fire time of a ``cancel_other`` job asked for the job's runs to be cancelled.

    Sent to every scheduler sharing the store (whatever ``share_events`` says): each
    cancels its runs of the job scheduled before ``before``, and publishes
    :class:`JobCancelled` for each.

    Attributes:
        before: runs of the job for earlier fire times are cancelled.
        reason: why, in words.
    """

    code: ClassVar[int] = EVENT_JOB_CANCEL_REQUESTED
    before: datetime
    reason: str = ""


#: APScheduler 3's name for :class:`JobSkipped`.
JobMaxInstancesReached = JobSkipped

E = TypeVar("E", bound=Event)
Listener = Callable[[Event], "Awaitable[None] | None"]


class Subscription(AsyncIterator[E]):
    """An async iterator over the events of one subscriber.

    The buffer is bounded: when the subscriber reads too slowly, new events are dropped
    for it (never for the scheduler or other subscribers) and counted in :attr:`missed`.
    """

    def __init__(self, receive: MemoryObjectReceiveStream[E]) -> None:
        self._receive = receive
        #: How many events this subscriber lost because its buffer was full.
        self.missed = 0

    def __aiter__(self) -> Subscription[E]:
        return self

    async def __anext__(self) -> E:
        try:
            return await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    def receive_nowait(self) -> E:
        """Return a buffered event at once; raises ``anyio.WouldBlock`` if there is none."""
        return self._receive.receive_nowait()


class _Subscriber:
    __slots__ = ("send", "subscription", "types")

    def __init__(
        self,
        types: tuple[type[Event], ...],
        send: MemoryObjectSendStream[Any],
        subscription: Subscription[Any],
    ) -> None:
        self.types = types
        self.send = send
        self.subscription = subscription


class EventHub:
    """Delivers published events to listeners (callbacks) and subscriptions (streams).

    Sync listeners are called in the publishing task; async listeners run in the task
    group given to :meth:`start`. A listener that raises is logged and never stops the
    scheduler.
    """

    def __init__(self, origin: str | None = None) -> None:
        #: What events built for this hub carry as their ``origin``.
        self.origin = origin
        self._listeners: list[tuple[Listener, int]] = []
        self._subscribers: list[_Subscriber] = []
        self._task_group: TaskGroup | None = None
        self._local_mask = 0
        self._share_mask = 0
        self._share: Callable[[Event], None] | None = None
        self._mask = 0

    def share(self, mask: int, send: Callable[[Event], None] | None) -> None:
        """Also hand published events whose code is in ``mask`` to ``send`` (which
        broadcasts them to other schedulers); ``send=None`` stops that."""
        self._share = send
        self._share_mask = mask if send is not None else 0
        self._mask = self._local_mask | self._share_mask

    def start(self, task_group: TaskGroup) -> None:
        """Use ``task_group`` (owned by the scheduler) for async listeners."""
        self._task_group = task_group

    def close(self) -> None:
        """End every subscription stream (their iterators stop)."""
        for sub in self._subscribers:
            sub.send.close()
        self._subscribers.clear()
        self._task_group = None

    @property
    def wanted(self) -> int:
        """The union of the codes someone listens to, here or (when events are shared)
        in another scheduler (``0``: publishing is free)."""
        return self._mask

    def _recompute_mask(self) -> None:
        mask = 0
        for _, listener_mask in self._listeners:
            mask |= listener_mask
        for sub in self._subscribers:
            for t in sub.types:
                mask |= t.code if t.code else EVENT_ALL
        self._local_mask = mask
        self._mask = mask | self._share_mask

    def add_listener(self, callback: Listener, mask: int = EVENT_ALL) -> None:
        """Call ``callback(event)`` for every event whose ``code`` is in ``mask``."""
        self._listeners.append((callback, mask))
        self._recompute_mask()

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling ``callback``; raises ``ValueError`` if it was not added."""
        for i, (cb, _) in enumerate(self._listeners):
            if cb == callback:
                del self._listeners[i]
                self._recompute_mask()
                return
        raise ValueError(f"{callback!r} is not a listener of this scheduler")

    @asynccontextmanager
    async def subscribe(
        self, *event_types: type[E], max_buffer: int = 1000
    ) -> AsyncIterator[Subscription[E]]:
        """Stream the events of the given types (all events if none given)."""
        types: tuple[type[Event], ...] = event_types or (Event,)
        send, receive = anyio.create_memory_object_stream[Any](max_buffer)
        subscription: Subscription[E] = Subscription(receive)
        sub = _Subscriber(types, send, subscription)
        self._subscribers.append(sub)
        self._recompute_mask()
        try:
            with receive:
                yield subscription
        finally:
            if sub in self._subscribers:
                self._subscribers.remove(sub)
                self._recompute_mask()
            send.close()

    def publish(self, event: Event) -> None:
        """Deliver ``event`` (and share it, see :meth:`share`); never blocks or raises."""
        code = event.code
        if self._share_mask & code:
            assert self._share is not None
            self._share(event)
        if self._local_mask & code:
            self._deliver(event)

    def deliver(self, event: Event) -> None:
        """Deliver an event that happened in another scheduler: to this hub's listeners
        and subscribers only, never shared again. Ignored while the scheduler is not
        running."""
        if self._task_group is not None and self._local_mask & event.code:
            self._deliver(event)

    def _deliver(self, event: Event) -> None:
        for sub in tuple(self._subscribers):
            if isinstance(event, sub.types):
                try:
                    sub.send.send_nowait(event)
                except anyio.WouldBlock:
                    if not sub.subscription.missed:
                        logger.warning(
                            "an event subscriber is not keeping up; dropping its events "
                            "(count in subscription.missed)"
                        )
                    sub.subscription.missed += 1
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    pass
        # A copy: a listener may remove itself (or others) while being called.
        for callback, mask in tuple(self._listeners):
            if not (mask & event.code):
                continue
            try:
                outcome = callback(event)
            except Exception:
                logger.exception("event listener %r raised on %r", callback, event)
                continue
            if inspect.isawaitable(outcome):
                if self._task_group is None:
                    logger.error("async listener %r called with no running scheduler", callback)
                    if inspect.iscoroutine(outcome):
                        outcome.close()
                    continue
                # Owner: the scheduler's task group runs async listeners.
                self._task_group.start_soon(self._await_listener, callback, outcome)

    @staticmethod
    async def _await_listener(callback: Listener, outcome: Awaitable[None]) -> None:
        try:
            await outcome
        except Exception:
            logger.exception("event listener %r raised", callback)


__all__ = [
    "EVENT_ALL",
    "EVENT_ALL_JOBS_REMOVED",
    "EVENT_EXECUTOR_ADDED",
    "EVENT_EXECUTOR_REMOVED",
    "EVENT_JOBSTORE_ADDED",
    "EVENT_JOBSTORE_REMOVED",
    "EVENT_JOB_ABANDONED",
    "EVENT_JOB_ADDED",
    "EVENT_JOB_CANCELLED",
    "EVENT_JOB_CANCEL_REQUESTED",
    "EVENT_JOB_ERROR",
    "EVENT_JOB_EXECUTED",
    "EVENT_JOB_MAX_INSTANCES",
    "EVENT_JOB_MISSED",
    "EVENT_JOB_MODIFIED",
    "EVENT_JOB_REMOVED",
    "EVENT_JOB_SUBMITTED",
    "EVENT_JOB_TIMEOUT",
    "EVENT_SCHEDULER_PAUSED",
    "EVENT_SCHEDULER_RESUMED",
    "EVENT_SCHEDULER_SHUTDOWN",
    "EVENT_SCHEDULER_START",
    "EVENT_SCHEDULER_STARTED",
    "EVENT_SHARED",
    "EVENT_STORE_ERROR",
    "EVENT_STORE_RECOVERED",
    "AllJobsRemoved",
    "Event",
    "EventHub",
    "JobAbandoned",
    "JobAdded",
    "JobCancelRequested",
    "JobCancelled",
    "JobError",
    "JobEvent",
    "JobExecuted",
    "JobMaxInstancesReached",
    "JobMissed",
    "JobModified",
    "JobRemoved",
    "JobSkipped",
    "JobSubmitted",
    "JobTimedOut",
    "RunEvent",
    "SchedulerEvent",
    "SchedulerPaused",
    "SchedulerResumed",
    "SchedulerStarted",
    "SchedulerStopped",
    "StoreFailed",
    "StoreRecovered",
    "Subscription",
]
