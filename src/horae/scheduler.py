"""AsyncScheduler: its lifecycle, events API and job verbs (the loop is in _running.py)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from datetime import datetime, timedelta, tzinfo
from types import TracebackType
from typing import IO, Any, Literal, TypeVar

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup

from horae import _reporting
from horae._building import (
    JOB_OPTIONS,
    MODIFIABLE,
    UNSET,
    build_job,
    build_trigger,
    choose_executor,
    first_fire_time,
    resolve_callable,
)
from horae._clock import Clock, SystemClock
from horae._execution import RunHook, call_job, current_run, in_job
from horae._explain import Explanation, explain_job
from horae._running import _RunLoop, backfill_run_id
from horae._time import resolve_timezone, to_aware
from horae.errors import (
    ConflictingIdError,
    DeserializationError,
    HoraeError,
    JobArgumentError,
    JobLookupError,
    SchedulerNotRunningError,
    SchedulerRunningError,
)
from horae.events import (
    EVENT_ALL,
    EVENT_SHARED,
    AllJobsRemoved,
    Event,
    EventHub,
    JobAdded,
    JobModified,
    JobRemoved,
    Listener,
    SchedulerPaused,
    SchedulerResumed,
    SchedulerStarted,
    SchedulerStopped,
    Subscription,
)
from horae.executors.async_ import AsyncExecutor
from horae.executors.base import Executor
from horae.executors.process import ProcessExecutor
from horae.executors.thread import ThreadExecutor
from horae.jobs import Job, JobDefaults, Retry, Run, RunOutcome
from horae.stores.base import SchedulerInfo, Store, StoreContext
from horae.stores.memory import MemoryStore
from horae.triggers.base import Trigger
from horae.triggers.interval import IntervalTrigger

logger = logging.getLogger(__name__)

__all__ = ["AsyncScheduler", "current_run"]

E = TypeVar("E", bound=Event)
Role = Literal["scheduler", "client"]


def _check_grace(grace: float | None) -> None:
    if grace is None:
        return
    if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
        raise JobArgumentError(f"grace: {grace!r} is not a number of seconds >= 0")


def _default_scheduler_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class AsyncScheduler(_RunLoop):
    """Runs jobs at the times their triggers give, on any anyio backend.

    Use it as an async context manager: entering starts it, leaving stops it after the
    running jobs finish (call :meth:`shutdown` with ``wait=False`` first to cancel them).

    Example::

        async with AsyncScheduler() as scheduler:
            await scheduler.add_job(tick, "interval", seconds=5)
            await scheduler.add_job(report, "cron", hour=9, day_of_week="mon-fri")
            await scheduler.run_until_stopped()

    Args:
        store: where jobs are kept; a new :class:`MemoryStore` by default.
        executors: named executors, merged over the built-in ``"async"``
            (:class:`AsyncExecutor`), ``"thread"`` (:class:`ThreadExecutor`) and
            ``"process"`` (:class:`ProcessExecutor`, used only by jobs that name it). Jobs
            that name no executor go to ``"async"`` for coroutine functions, and to
            ``"default"`` (if given) or ``"thread"`` for everything else.
        job_defaults: options jobs take when ``add_job`` omits them (a dict, as in
            APScheduler 3, or a :class:`JobDefaults`).
        timezone: the zone for triggers and naive datetimes; the system's zone by default.
        role: ``"scheduler"`` (runs due jobs) or ``"client"`` (only manages jobs in a
            shared store).
        clock: where time comes from; :class:`horae.testing.FakeClock` in tests.
        scheduler_id: a stable id for this scheduler (hostname-pid-random by default).
        lease_duration: seconds a scheduler holds a due job before another may take it.
        batch_size: how many due jobs one store round trip acquires.
        share_events: also send this scheduler's job and run events to the other
            schedulers sharing the store, whose listeners and subscribers then see them
            with ``event.origin`` set to this scheduler's id. Off by default: building
            and sending an event for every run costs ~15-25% of a burst's throughput.
            Every scheduler receives what others send, whatever this says.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        executors: Mapping[str, Executor] | None = None,
        job_defaults: Mapping[str, Any] | JobDefaults | None = None,
        timezone: str | tzinfo | None = None,
        role: Role = "scheduler",
        clock: Clock | None = None,
        scheduler_id: str | None = None,
        lease_duration: float = 30.0,
        batch_size: int = 250,
        share_events: bool = False,
    ) -> None:
        if role not in ("scheduler", "client"):
            raise JobArgumentError(f"role: {role!r} is not a role; use 'scheduler' or 'client'")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise JobArgumentError(f"batch_size: {batch_size!r} is not a whole number >= 1")
        if not lease_duration > 0:
            raise JobArgumentError(f"lease_duration: {lease_duration!r} must be above 0 seconds")
        self.store: Store = store if store is not None else MemoryStore()
        self.executors: dict[str, Executor] = {
            "async": AsyncExecutor(),
            "thread": ThreadExecutor(),
            # Starts no process until a job routed to it (executor="process") runs.
            "process": ProcessExecutor(),
        }
        for name, executor in (executors or {}).items():
            if not isinstance(executor, Executor):
                raise JobArgumentError(
                    f"executors[{name!r}]: {executor!r} is not an executor "
                    "(AsyncExecutor, ThreadExecutor or one of your own)"
                )
            self.executors[name] = executor
        self.job_defaults = JobDefaults.from_mapping(job_defaults)
        self.timezone = resolve_timezone(timezone)
        self.role: Role = role
        self.id = scheduler_id or _default_scheduler_id()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._lease_duration = float(lease_duration)
        self._batch_size = batch_size
        self._hub = EventHub(origin=self.id)
        self.share_events = bool(share_events)
        # Events waiting to be broadcast to other schedulers (see _send_events).
        self._outbox: list[Event] = []
        self._outbox_ready = anyio.Event()
        self._outbox_closed = False
        self._outbox_dropped = 0
        self._sending = False
        self._broadcast_failing = False
        self._state: Literal["initial", "starting", "running", "stopping", "stopped"] = "initial"
        self._paused = False
        self._pending: list[tuple[Job, bool]] = []
        # Pending jobs whose first fire time the caller gave (add_job(next_run_time=)).
        self._pending_explicit: set[str] = set()
        # Pending "interval" jobs given no start_date (see _same_schedule).
        self._pending_implicit_start: set[str] = set()
        # Who added each pending job (add_job(actor=)), for its JobAdded event at start.
        self._pending_actors: dict[str, str] = {}
        self._exit_stack: AsyncExitStack | None = None
        self._task_group: TaskGroup | None = None
        self._runs: TaskGroup | None = None
        self._runs_close = anyio.Event()
        self._loop_done = anyio.Event()
        self._runs_done = anyio.Event()
        self._stopped = anyio.Event()
        self._wakeup = anyio.Event()
        # What wait_idle() looks at.
        self._loop_waiting = False
        self._deadline: datetime | None = None
        self._in_flight = 0
        # Runs waiting out their jitter, by run id: when each wait ends.
        self._clock_waits: dict[uuid.UUID, datetime] = {}
        self._idle_watchers = 0
        self._idle_changed = anyio.Event()
        # Runs executing here (or waiting for a retry), whose store leases the keeper
        # task renews; those another scheduler took over; the store's health.
        self._live_runs: dict[uuid.UUID, Run] = {}
        self._lost_runs: set[uuid.UUID] = set()
        self._pending_runs: set[uuid.UUID] = set()
        self._cancel_scopes: dict[uuid.UUID, tuple[Run, anyio.CancelScope]] = {}
        self._cancel_reasons: dict[uuid.UUID, str] = {}
        self._holding: set[str] = set()
        self._store_down_since: datetime | None = None
        self._store_back_at: datetime | None = None
        self._keeping = False
        self._keep_deadline: datetime | None = None
        self._keep_wake = anyio.Event()
        self._registers = False
        self._started_at: datetime | None = None
        self._beat_due: datetime | None = None
        self._beat_state = ""
        self._beat_failing = False
        # Set by horae.tracing.enable_tracing(); read once per run.
        self._run_hook: RunHook | None = None
        # Set by horae.metrics.PrometheusMetrics: the loop reports each batch's size.
        self._on_acquired: Callable[[int], None] | None = None

    def __repr__(self) -> str:
        return f"AsyncScheduler(id={self.id!r}, store={self.store!r}, state={self._state!r})"

    # ----------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        """Whether the scheduler has started and not stopped."""
        return self._state == "running"

    async def __aenter__(self) -> AsyncScheduler:
        if self._state in ("starting", "running", "stopping"):
            raise SchedulerRunningError(
                "this scheduler is running already; enter it (async with / start()) only once"
            )
        self._state = "starting"
        # What a previous start left behind is of no use now (a memory store's runs are
        # taken over as abandoned by the keeper, like any other scheduler's).
        self._live_runs.clear()
        self._lost_runs.clear()
        self._pending_runs.clear()
        self._store_down_since = None
        # A scheduler that starts may find every lease expired because the store was
        # down, or just back: it claims nobody's runs before one lease has passed.
        self._store_back_at = self._clock.now()
        self._runs_close = anyio.Event()
        self._loop_done = anyio.Event()
        self._runs_done = anyio.Event()
        self._stopped = anyio.Event()
        stack = AsyncExitStack()
        await stack.__aenter__()
        try:
            # Events other schedulers broadcast go to local listeners only (deliver),
            # never back out.
            await self.store.start(
                StoreContext(scheduler_id=self.id, wakeup=self._wake, publish=self._on_store_event)
            )
            stack.push_async_callback(self.store.stop)
            if self.role == "scheduler":
                # Into the store's register (get_schedulers); out of it once the runs
                # are done and before the store stops (the exit stack's order).
                await self._register()
                stack.push_async_callback(self._unregister)
            for executor in self.executors.values():
                await executor.start()
                stack.push_async_callback(executor.stop)
            # Owner of every background task: the loop, the runs and async listeners.
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            self._hub.start(self._task_group)
            if self.share_events:
                self._outbox_closed = False
                self._outbox_ready = anyio.Event()
                self._hub.share(EVENT_SHARED, self._share_event)
                # Owner: the scheduler's task group; it ends once _stop() closed the outbox.
                self._task_group.start_soon(self._send_events, name=f"horae events {self.id}")
            await self._add_pending_jobs()
            if self.role == "scheduler":
                self._runs = await self._task_group.start(self._host_runs)
                self._task_group.start_soon(self._loop, name=f"horae scheduler {self.id}")
                # Owner: the scheduler's task group; it ends once the runs are done.
                self._task_group.start_soon(
                    self._keep_runs, self._runs_done, name=f"horae run leases {self.id}"
                )
            else:
                self._loop_done.set()
                self._runs_done.set()
                self._runs_close.set()
        except BaseException:
            self._state = "stopped"
            await stack.__aexit__(*sys.exc_info())
            raise
        self._exit_stack = stack
        self._state = "running"
        self._publish(
            SchedulerStarted(timestamp=self._clock.now(), scheduler_id=self.id, origin=self.id)
        )
        logger.info("scheduler %s started (store %r)", self.id, self.store)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._exit_stack = self._exit_stack, None
        try:
            if self._state == "running":
                try:
                    await self._stop(wait=exc_type is None)
                except BaseException:
                    # Cancelled while stopping (a cancel scope around the ``async with``):
                    # the cancellation ends the loop and the runs; the task group, the
                    # register, the executors and the store are still left in order.
                    if stack is not None:
                        unwound, stack = stack, None
                        await unwound.__aexit__(*sys.exc_info())
                    raise
            if stack is not None:
                return await stack.__aexit__(exc_type, exc, tb)
            return None
        finally:
            self._task_group = None
            self._runs = None
            self._hub.close()
            self._state = "stopped"
            self._stopped.set()
            self._notify_idle()

    async def _stop(self, wait: bool, grace: float | None = None) -> None:
        """Stop acquiring, then wait for (or cancel) the runs in progress."""
        self._state = "stopping"
        self._wake()
        # The loop may be inside a store call that is about to hand it due jobs: let it
        # finish dispatching them before the runs' task group closes, or they would be
        # recorded in flight and never run.
        await self._loop_done.wait()
        self._runs_close.set()
        if self._in_flight:
            # Waiting for runs may take a while: let the register say "stopping" now.
            self._keep_wake.set()
        if self._runs is not None:
            if not wait:
                self._runs.cancel_scope.cancel()
            elif grace is not None and not self._runs_done.is_set():
                # Real time: a shutdown is not driven by a test's fake clock.
                with anyio.move_on_after(grace):
                    await self._runs_done.wait()
                if not self._runs_done.is_set():
                    logger.warning(
                        "scheduler %s: %d run(s) still going after the %g s grace period; "
                        "cancelling them (recorded abandoned, or handed over for their retry)",
                        self.id,
                        len(self._live_runs),
                        grace,
                    )
                    self._runs.cancel_scope.cancel()
        await self._runs_done.wait()
        self._publish(
            SchedulerStopped(timestamp=self._clock.now(), scheduler_id=self.id, origin=self.id)
        )
        self._close_outbox()
        # Subscribers' iterators end here, so that tasks reading them can finish before
        # the scheduler's own task group is left.
        self._hub.close()
        logger.info("scheduler %s stopped", self.id)

    async def shutdown(self, wait: bool = True, *, grace: float | None = None) -> None:
        """Stop the scheduler: stop acquiring jobs, then wait for running jobs to finish.

        With ``wait=False``, running jobs are cancelled (async jobs at once; threads are
        left to finish on their own) and reported as ``abandoned``. With ``grace``, the
        scheduler waits at most that many seconds for them, then cancels what is left.
        The ``async with`` block (or :meth:`run_until_stopped`) then ends. A stopped
        scheduler holds no job lease, so another scheduler takes its jobs over at once.

        Raises:
            SchedulerNotRunningError: the scheduler is not running.
        """
        if self._state != "running":
            raise SchedulerNotRunningError("shutdown(): the scheduler is not running")
        _check_grace(grace)
        if in_job() and self._task_group is not None:
            # Called by a job: waiting here for the runs to end would wait for itself.
            # Owner: the scheduler's task group finishes the stop after the job returns.
            self._state = "stopping"
            self._task_group.start_soon(self._stop_then_signal, wait, grace)
            return
        await self._stop_then_signal(wait, grace)

    async def _stop_then_signal(self, wait: bool, grace: float | None = None) -> None:
        await self._stop(wait, grace)
        self._stopped.set()

    async def run_until_stopped(self) -> None:
        """Wait until :meth:`shutdown` is called (from a job, a listener or another task)."""
        if self._state != "running":
            raise SchedulerNotRunningError(
                "run_until_stopped() needs a started scheduler (async with AsyncScheduler() ...)"
            )
        await self._stopped.wait()

    async def run_forever(self, *, grace: float = 30.0, handle_signals: bool = True) -> None:
        """Start the scheduler and run until it is shut down or the task is cancelled.

        With ``handle_signals`` (and in the main thread), SIGTERM or SIGINT stops it
        gracefully: it stops acquiring jobs, waits up to ``grace`` seconds for running
        jobs, then cancels the rest (recorded ``abandoned``, or handed over to be retried
        when the job's retry policy retries abandoned runs). A second signal cancels at
        once.
        """
        _check_grace(grace)
        async with self:
            if not handle_signals or threading.current_thread() is not threading.main_thread():
                await self._stopped.wait()
                return
            async with anyio.create_task_group() as signals:
                # Owner: this block; cancelled once the scheduler has stopped.
                signals.start_soon(self._stop_on_signals, grace)
                await self._stopped.wait()
                signals.cancel_scope.cancel()

    async def _stop_on_signals(self, grace: float) -> None:
        try:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as received:
                async for signum in received:
                    self._on_signal(signal.Signals(signum).name, grace)
        except NotImplementedError:  # no signal handlers here (Windows): Ctrl+C cancels
            logger.info("scheduler %s: cannot receive signals here", self.id)

    def _on_signal(self, name: str, grace: float) -> None:
        if self._state == "running":
            logger.warning(
                "scheduler %s: %s received; stopping (waiting up to %g s for %d running "
                "job(s); send it again to cancel them now)",
                self.id,
                name,
                grace,
                len(self._live_runs),
            )
            assert self._task_group is not None
            self._state = "stopping"
            # Owner: the scheduler's task group, which outlives the signal receiver.
            self._task_group.start_soon(self._stop_then_signal, True, grace)
        elif self._runs is not None:
            logger.warning("scheduler %s: %s received again; cancelling runs", self.id, name)
            self._runs.cancel_scope.cancel()

    async def pause(self) -> None:
        """Stop running due jobs until :meth:`resume`; fire times that pass meanwhile are
        handled by the misfire rules when it resumes."""
        if not self._paused:
            self._paused = True
            self._wake()
            self._keep_wake.set()  # the next heartbeat says "paused"
            self._publish(
                SchedulerPaused(timestamp=self._clock.now(), scheduler_id=self.id, origin=self.id)
            )

    async def resume(self) -> None:
        """Resume running due jobs after :meth:`pause`."""
        if self._paused:
            self._paused = False
            self._wake()
            self._keep_wake.set()
            self._publish(
                SchedulerResumed(timestamp=self._clock.now(), scheduler_id=self.id, origin=self.id)
            )

    @property
    def paused(self) -> bool:
        """Whether :meth:`pause` is in effect."""
        return self._paused

    # ------------------------------------------------------------------- events

    def add_listener(self, callback: Listener, mask: int = EVENT_ALL) -> None:
        """Call ``callback(event)`` (sync or async) for events whose code is in ``mask``.

        Example::

            scheduler.add_listener(on_done, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        """
        self._hub.add_listener(callback, mask)

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling a listener added with :meth:`add_listener`."""
        self._hub.remove_listener(callback)

    def subscribe(
        self, *event_types: type[E], max_buffer: int = 1000
    ) -> AbstractAsyncContextManager[Subscription[E]]:
        """Stream events of the given classes (every event if none given).

        Example::

            async with scheduler.subscribe(JobExecuted, JobError) as events:
                async for event in events:
                    print(event)

        A subscriber that reads too slowly loses events past ``max_buffer`` (counted in
        ``events.missed``); the scheduler never waits for it.
        """
        return self._hub.subscribe(*event_types, max_buffer=max_buffer)

    def _publish(self, event: Event) -> None:
        self._hub.publish(event)

    # ------------------------------------------------------------ job management

    def _check_usable(self, verb: str) -> None:
        if self._state in ("stopping", "stopped"):
            raise SchedulerNotRunningError(
                f"{verb}(): the scheduler has shut down; start it again (async with) first"
            )

    def _bind(self, job: Job) -> Job:
        # Jobs are frozen values; the scheduler reference is not part of their value
        # (eq=False), so binding it in place changes nothing anyone compares.
        if job._scheduler is None:
            object.__setattr__(job, "_scheduler", self)
        return job

    async def add_job(
        self,
        func: Callable[..., Any] | str,
        trigger: Trigger | str | None = None,
        *,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        id: str | None = None,
        name: str | None = None,
        replace_existing: bool = False,
        executor: str | None = None,
        coalesce: bool = UNSET,
        max_instances: int = UNSET,
        misfire_grace_time: float | timedelta | None = UNSET,
        jitter: float | timedelta | None = UNSET,
        timeout: float | timedelta | None = UNSET,
        retry: Retry | int | None = UNSET,
        overlap: str = UNSET,
        on_crash: str | None = UNSET,
        max_runs: int | None = None,
        pause_after_failures: int | None = UNSET,
        next_run_time: datetime | str | None = UNSET,
        metadata: Mapping[str, Any] | None = None,
        actor: str = "",
        **trigger_args: Any,
    ) -> Job:
        """Schedule ``func`` and return the new :class:`Job`.

        Args:
            func: a coroutine function, a sync callable or a ``"module:function"`` ref.
            trigger: ``"date"``, ``"interval"``, ``"calendarinterval"``, ``"cron"`` with
                ``trigger_args``, or a trigger instance; ``None`` runs the job once, now.
            args: positional arguments for ``func``.
            kwargs: keyword arguments for ``func``.
            id: the job's id (a random one by default).
            name: a display name (the callable's qualified name by default).
            replace_existing: replace a job that has the same id instead of failing.
            executor: the executor's name (chosen by the kind of callable by default).
            coalesce: run a backlog of due fire times once instead of once each.
            max_instances: how many runs of this job may be in progress at once.
            misfire_grace_time: seconds after its fire time a run may still start
                (``None``: no limit); later fire times are reported missed.
            jitter: delay each run by a random 0..jitter seconds (spreads load).
            timeout: cancel a run after this many seconds and record it ``timeout``
                (a thread cannot be cancelled: see ``docs/guarantees.md``).
            retry: a :class:`Retry` policy for runs that fail, time out or are
                abandoned (a number is short for ``Retry(attempts=n)``); no retries by
                default.
            overlap: what a fire time does while ``max_instances`` runs are in progress:
                ``"skip"`` (default), ``"buffer_one"``, ``"buffer_all"``,
                ``"cancel_other"`` or ``"allow_all"`` (see :class:`Job` and
                ``docs/guarantees.md``); it holds across every process sharing the store.
            on_crash: ``"abandon"`` or ``"rerun"`` a run whose scheduler died (by
                default as ``retry`` says); a rerun has the same :attr:`Run.key`.
            max_runs: remove the job once this many runs of it have started.
            pause_after_failures: pause the job (with a note saying why) after this
                many fire times in a row failed.
            next_run_time: override the first fire time; ``None`` adds the job paused.
            metadata: your own JSON-able data, kept with the job.
            actor: who adds it (a user, a tool), named in the :class:`JobAdded` event
                (as ``pause_job`` and the other verbs take it).
            **trigger_args: arguments of the trigger named by ``trigger``.

        Raises:
            TriggerError: unknown trigger alias, argument or invalid value.
            InvalidCallableError: ``func`` is not callable or its reference does not import.
            ExecutorLookupError: no executor has that name.
            JobArgumentError: an option has an invalid value.
            ConflictingIdError: the id exists and ``replace_existing`` is false.
            SchedulerNotRunningError: the scheduler has shut down.
        """
        self._check_usable("add_job")
        actor = _check_actor(actor)
        options = {
            "args": args,
            "kwargs": kwargs,
            "id": id,
            "name": name,
            "executor": executor,
            "coalesce": coalesce,
            "max_instances": max_instances,
            "misfire_grace_time": misfire_grace_time,
            "jitter": jitter,
            "timeout": timeout,
            "retry": retry,
            "overlap": overlap,
            "on_crash": on_crash,
            "max_runs": max_runs,
            "pause_after_failures": pause_after_failures,
            "next_run_time": next_run_time,
            "metadata": metadata,
        }
        job = self._build_job(func, trigger, options, trigger_args)
        explicit = next_run_time is not UNSET
        implicit_start = _implicit_start(trigger, trigger_args)
        if self._state == "initial":
            self._add_pending(job, replace_existing, actor, implicit_start=implicit_start)
            if explicit:
                self._pending_explicit.add(job.id)
            return self._bind(job)
        if replace_existing and not explicit:
            job = await self._keep_schedule(job, implicit_start=implicit_start)
        await self.store.add_jobs([job], replace=replace_existing)
        self._wake_for(job.next_run_time)
        if self._hub.wanted & JobAdded.code:
            self._publish(
                JobAdded(timestamp=self._now(), job_id=job.id, origin=self.id, actor=actor)
            )
        return self._bind(job)

    async def add_jobs(
        self,
        specs: Sequence[Mapping[str, Any]],
        *,
        replace_existing: bool = False,
        actor: str = "",
    ) -> list[Job]:
        """Add many jobs in one store round trip (much faster on persistent stores).

        Each spec holds what :meth:`add_job` takes by keyword, with ``func`` and
        ``trigger`` as keys too. Every spec is checked before anything is stored: one bad
        spec refuses the whole batch, with the spec's index in the message. ``actor``
        names who adds them, in their :class:`JobAdded` events (a spec's own ``actor``
        key wins).

        Example::

            await scheduler.add_jobs(
                [{"func": report, "trigger": "cron", "hour": h, "id": f"report-{h}"}
                 for h in range(24)]
            )
        """
        self._check_usable("add_jobs")
        _check_actor(actor)
        jobs: list[Job] = []
        implicit_starts: set[str] = set()
        actors: list[str] = []
        for index, spec in enumerate(specs):
            values = dict(spec)
            try:
                func = values.pop("func")
            except KeyError:
                raise JobArgumentError(f"add_jobs(): spec {index} has no 'func'") from None
            trigger = values.pop("trigger", None)
            try:
                actors.append(_check_actor(values.pop("actor", actor)))
            except JobArgumentError as exc:
                raise JobArgumentError(f"add_jobs(): spec {index}: {exc}") from None
            options = {k: v for k, v in values.items() if k in JOB_OPTIONS}
            trigger_args = {k: v for k, v in values.items() if k not in JOB_OPTIONS}
            try:
                jobs.append(self._build_job(func, trigger, options, trigger_args))
            except HoraeError as exc:
                if hasattr(exc, "add_note"):  # Python 3.11+
                    exc.add_note(f"in add_jobs(), spec {index}")
                raise
            if _implicit_start(trigger, trigger_args):
                implicit_starts.add(jobs[-1].id)
        if self._state == "initial":
            for job, by in zip(jobs, actors, strict=True):
                self._add_pending(
                    job, replace_existing, by, implicit_start=job.id in implicit_starts
                )
            return [self._bind(job) for job in jobs]
        await self.store.add_jobs(jobs, replace=replace_existing)
        earliest = min((j.next_run_time for j in jobs if j.next_run_time), default=None)
        self._wake_for(earliest)
        if self._hub.wanted & JobAdded.code:
            now = self._now()
            for job, by in zip(jobs, actors, strict=True):
                self._publish(JobAdded(timestamp=now, job_id=job.id, origin=self.id, actor=by))
        return [self._bind(job) for job in jobs]

    def scheduled_job(
        self, trigger: Trigger | str | None = None, **options: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a function to add it as a job when the scheduler starts.

        Takes the arguments of :meth:`add_job` after ``func``. Example::

            @scheduler.scheduled_job("cron", hour=3)
            async def nightly() -> None: ...
        """
        if self._state != "initial":
            raise SchedulerRunningError(
                "scheduled_job() registers jobs for when the scheduler starts; this one has "
                "started already, so call 'await scheduler.add_job(...)' instead"
            )

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            replace = bool(options.get("replace_existing", False))
            actor = _check_actor(options.get("actor", ""))
            job_options = {k: v for k, v in options.items() if k in JOB_OPTIONS}
            trigger_args = {
                k: v
                for k, v in options.items()
                if k not in JOB_OPTIONS and k not in ("replace_existing", "actor")
            }
            job = self._build_job(func, trigger, job_options, trigger_args)
            self._add_pending(
                job, replace, actor, implicit_start=_implicit_start(trigger, trigger_args)
            )
            if "next_run_time" in job_options:
                self._pending_explicit.add(job.id)
            return func

        return decorator

    def _build_job(
        self,
        func: Callable[..., Any] | str,
        trigger: Trigger | str | None,
        options: Mapping[str, Any],
        trigger_args: Mapping[str, Any],
    ) -> Job:
        return build_job(
            func,
            trigger,
            options,
            trigger_args,
            defaults=self.job_defaults,
            executors=self.executors,
            timezone=self.timezone,
            now=self._now(),
        )

    def _add_pending(self, job: Job, replace: bool, actor: str, *, implicit_start: bool) -> None:
        if not replace and any(p.id == job.id for p, _ in self._pending):
            raise ConflictingIdError(job.id)
        self._pending = [(p, r) for p, r in self._pending if p.id != job.id]
        self._pending.append((job, replace))
        self._pending_explicit.discard(job.id)
        if implicit_start:
            self._pending_implicit_start.add(job.id)
        else:
            self._pending_implicit_start.discard(job.id)
        self._pending_actors[job.id] = actor

    async def _add_pending_jobs(self) -> None:
        pending, self._pending = self._pending, []
        explicit, self._pending_explicit = self._pending_explicit, set()
        implicit_starts, self._pending_implicit_start = self._pending_implicit_start, set()
        actors, self._pending_actors = self._pending_actors, {}
        for job, replace in pending:
            if replace and job.id not in explicit:
                job = await self._keep_schedule(job, implicit_start=job.id in implicit_starts)
            await self.store.add_jobs([job], replace=replace)
            actor = actors.get(job.id, "")
            self._publish(
                JobAdded(timestamp=self._now(), job_id=job.id, origin=self.id, actor=actor)
            )

    async def _keep_schedule(self, job: Job, *, implicit_start: bool) -> Job:
        """``job`` as it replaces the stored job of its id, keeping that one's place in
        the schedule when the schedule is the same.

        A program that adds its jobs with ``replace_existing=True`` at every start would
        otherwise restart each schedule from now, and the fire times that passed while no
        scheduler ran would be neither run nor reported. When the trigger is unchanged
        (an interval's start aside when ``add_job`` gave it none: ``implicit_start``),
        the stored next run time stays if it is earlier (a pending fire time: it runs,
        late, by the misfire rules), and so does a pause (with its note).
        """
        try:
            stored = await self.store.get_job(job.id)
        except (JobLookupError, DeserializationError):
            return job
        if not _same_schedule(stored.trigger, job.trigger, implicit_start=implicit_start):
            return job
        if stored.next_run_time is None:
            if stored.trigger.next(self._now()) is None:
                return job  # kept only for a rerun: not a pause
            return attrs.evolve(job, next_run_time=None, pause_note=stored.pause_note)
        if job.next_run_time is None or stored.next_run_time < job.next_run_time:
            return attrs.evolve(job, next_run_time=stored.next_run_time)
        return job

    async def get_job(self, job_id: str) -> Job:
        """The job with that id.

        Raises:
            JobLookupError: no job has that id.
        """
        self._check_usable("get_job")
        if self._state == "initial":
            for job, _ in self._pending:
                if job.id == job_id:
                    return job
            raise JobLookupError(job_id)
        return self._bind(await self.store.get_job(job_id))

    async def get_jobs(self) -> list[Job]:
        """Every job, by next run time (paused jobs last)."""
        self._check_usable("get_jobs")
        if self._state == "initial":
            return [job for job, _ in self._pending]
        return [self._bind(job) for job in await self.store.get_jobs()]

    async def _replace(self, job: Job, actor: str = "") -> Job:
        if self._state == "initial":
            self._pending = [(job if p.id == job.id else p, r) for p, r in self._pending]
            return job
        await self.store.update_job(job)
        self._wake_for(job.next_run_time)
        self._publish(
            JobModified(timestamp=self._now(), job_id=job.id, origin=self.id, actor=actor)
        )
        return self._bind(job)

    async def modify_job(self, job_id: str, *, actor: str = "", **changes: Any) -> Job:
        """Change options of a job (``name``, ``args``, ``max_instances``, ``trigger``...).

        ``actor`` names who made the change, in the :class:`JobModified` event (as
        ``pause_job``, ``resume_job`` and ``remove_job`` take it).

        Raises:
            JobLookupError: no job has that id.
            JobArgumentError: an option is unknown or has an invalid value.
        """
        unknown = sorted(set(changes) - MODIFIABLE)
        if unknown:
            raise JobArgumentError(
                f"modify_job(): {unknown[0]!r} cannot be changed; "
                f"changeable options are {', '.join(sorted(MODIFIABLE))}"
            )
        job = await self.get_job(job_id)
        values: dict[str, Any] = dict(changes)
        if "func" in values:
            values["func"], values["func_ref"] = resolve_callable(values["func"])
        func = values.get("func", job.func)
        if "executor" in values or "func" in values:
            values["executor"] = choose_executor(func, values.get("executor"), self.executors)
        if "trigger" in values:
            values["trigger"] = build_trigger(values["trigger"], {}, self.timezone, self._now())
            if "next_run_time" not in values and job.next_run_time is not None:
                values["next_run_time"] = first_fire_time(values["trigger"], self._now())
        if values.get("next_run_time") is not None:
            values["next_run_time"] = to_aware(
                values["next_run_time"], self.timezone, "next_run_time"
            )
        if "args" in values:
            values["args"] = tuple(values["args"])
        return await self._replace(attrs.evolve(job, **values), _check_actor(actor))

    async def reschedule_job(
        self, job_id: str, trigger: Trigger | str, *, actor: str = "", **trigger_args: Any
    ) -> Job:
        """Give a job a new trigger; its next run time is the trigger's first fire time.

        ``actor`` names who reschedules it, in the :class:`JobModified` event.

        Raises:
            JobLookupError: no job has that id.
            TriggerError: the trigger or its arguments are invalid.
        """
        actor = _check_actor(actor)
        job = await self.get_job(job_id)
        now = self._now()
        new_trigger = build_trigger(trigger, trigger_args, self.timezone, now)
        first = first_fire_time(new_trigger, now)
        job = attrs.evolve(job, trigger=new_trigger, next_run_time=first)
        return await self._replace(job, actor)

    async def pause_job(self, job_id: str, *, note: str | None = None, actor: str = "") -> Job:
        """Pause a job: it has no next run time until :meth:`resume_job`.

        Args:
            job_id: the job's id.
            note: why, for whoever looks at the job later (``Job.pause_note``,
                :meth:`explain`, ``horae jobs show``); resuming the job clears it.
            actor: who pauses it (a user, a tool), named in the :class:`JobModified`
                event (the dashboard and the CLI name themselves and their user).
        """
        if note is not None and not isinstance(note, str):
            raise JobArgumentError(f"note: {note!r} is not a string")
        actor = _check_actor(actor)
        job = await self.get_job(job_id)
        return await self._replace(attrs.evolve(job, next_run_time=None, pause_note=note), actor)

    async def resume_job(self, job_id: str, *, actor: str = "") -> Job:
        """Resume a paused job from its trigger's first fire time after now.

        Fire times that passed while the job was paused are not run. A job whose trigger
        has no fire time left is removed (a :class:`JobRemoved` event tells it).
        ``actor`` names who resumes it, in the event.
        """
        actor = _check_actor(actor)
        job = await self.get_job(job_id)
        if job.next_run_time is not None:
            return job
        job = attrs.evolve(job, pause_note=None, resumed_at=self._now())
        # Strictly after now: a fire time at this very instant may have run just before
        # the pause, and must not run twice.
        first = job.trigger.next(self._now())
        if first is None:
            await self.remove_job(job_id, actor=actor)
            return job
        return await self._replace(attrs.evolve(job, next_run_time=first), actor)

    async def remove_job(self, job_id: str, *, actor: str = "") -> None:
        """Remove a job. Runs in progress finish; their outcomes are still recorded.

        ``actor`` names who removes it, in the :class:`JobRemoved` event.

        Raises:
            JobLookupError: no job has that id.
        """
        self._check_usable("remove_job")
        actor = _check_actor(actor)
        if self._state == "initial":
            before = len(self._pending)
            self._pending = [(p, r) for p, r in self._pending if p.id != job_id]
            if len(self._pending) == before:
                raise JobLookupError(job_id)
            return
        await self.store.remove_job(job_id)
        self._wake()
        self._publish(JobRemoved(timestamp=self._now(), job_id=job_id, origin=self.id, actor=actor))

    async def remove_all_jobs(self, *, actor: str = "") -> None:
        """Remove every job; ``actor`` names who did, in the :class:`AllJobsRemoved` event."""
        self._check_usable("remove_all_jobs")
        actor = _check_actor(actor)
        if self._state == "initial":
            self._pending.clear()
            self._pending_actors.clear()
            return
        await self.store.remove_all_jobs()
        self._wake()
        self._publish(AllJobsRemoved(timestamp=self._now(), origin=self.id, actor=actor))

    async def get_runs(self, job_id: str, limit: int = 100) -> list[Run]:
        """The job's recent runs: in progress first, then finished ones, newest first."""
        self._check_usable("get_runs")
        if self._state == "initial":
            return []
        return await self.store.get_runs(job_id, limit)

    async def get_schedulers(self) -> list[SchedulerInfo]:
        """The schedulers sharing the store, as they last reported themselves.

        Every scheduler of role ``"scheduler"`` writes its record (id, host, pid, state,
        version, start time) when it starts, renews it every third of its
        ``lease_duration`` (its heartbeat), and removes it when it stops. A record whose
        heartbeat is older than a lease (``not info.alive(now)``) belongs to a scheduler
        that died or lost the store; the store drops it a day later. Each record also
        counts the job leases and runs in progress its scheduler holds now. Works on
        clients too (``role="client"``, which are not listed themselves).

        Example::

            now = datetime.now(timezone.utc)
            for info in await scheduler.get_schedulers():
                print(info.id, info.host, "alive" if info.alive(now) else "silent")

        Raises:
            SchedulerNotRunningError: the scheduler has not started (the store is not
                open) or has shut down.
        """
        self._check_usable("get_schedulers")
        if self._state == "initial":
            raise SchedulerNotRunningError(
                "get_schedulers() reads the store: start the scheduler first (async with)"
            )
        return await self.store.get_schedulers(self._now())

    async def backfill(
        self,
        job_id: str,
        start: datetime | str,
        end: datetime | str,
        *,
        rerun_succeeded: bool = False,
    ) -> list[Run]:
        """Run the fire times of a past window of a job, once each, and return their runs.

        Every fire time of the job's trigger from ``start`` to ``end`` (both included)
        runs, in order, one at a time, through the job's executor, and is recorded in
        the job's run history with its fire time as ``scheduled_time`` (so
        ``current_run()`` and :attr:`Run.key` inside the job name the fire time it
        makes up for). Fire times already recorded ``success`` are left out, unless
        ``rerun_succeeded``: calling it again after an interruption goes on where it
        stopped. The job's misfire, coalescing, overlap and retry rules do not apply, and
        the runs do not count for ``max_instances`` (as with :meth:`run_job`). A paused job
        can be backfilled.

        Which fire times succeeded is read from the run history, which a store keeps to
        its ``run_retention`` (100 finished runs per job by default): a fire time whose
        record was trimmed since (more runs than that ended after it) runs again.

        Example::

            runs = await scheduler.backfill("daily-report", "2027-03-01", "2027-03-07 23:59")

        Args:
            job_id: the job's id.
            start: the window's start (naive values are in the scheduler's time zone).
            end: the window's end; not after now.
            rerun_succeeded: also run the fire times that succeeded before.

        Raises:
            JobLookupError: no job has that id.
            JobArgumentError: the window is reversed, ends in the future, or holds more
                than 10,000 fire times.
        """
        if self._state != "running":
            raise SchedulerNotRunningError("backfill() needs a running scheduler")
        job = await self.get_job(job_id)
        now = self._now()
        first = to_aware(start, self.timezone, "start")
        last = to_aware(end, self.timezone, "end")
        if last < first:
            raise JobArgumentError(f"end: {last.isoformat()} is before start {first.isoformat()}")
        if last > now:
            raise JobArgumentError(
                f"end: {last.isoformat()} is after now ({now.isoformat()}); backfill runs "
                "fire times that have passed"
            )
        fire_times: list[datetime] = []
        t = job.trigger.next(first - timedelta(microseconds=1))
        while t is not None and t <= last:
            if len(fire_times) == _BACKFILL_LIMIT:
                raise JobArgumentError(
                    f"start/end: the window holds more than {_BACKFILL_LIMIT:,} fire times "
                    f"of job {job_id!r}; backfill it in shorter windows"
                )
            fire_times.append(t)
            t = job.trigger.next(t)
        done: set[datetime] = set()
        if fire_times and not rerun_succeeded:
            # The history is newest first by when runs ended, whatever their fire times:
            # the window's records may lie behind any number of later runs. Read a few
            # first; if they do not show every fire time done, all that the store keeps.
            window = max(100, 2 * len(fire_times))
            for limit in (window, max(window, _BACKFILL_HISTORY)):
                history = await self.store.get_runs(job_id, limit=limit)
                done = {
                    r.scheduled_time
                    for r in history
                    if r.outcome is RunOutcome.SUCCESS and first <= r.scheduled_time <= last
                }
                if len(history) < limit or len(done) == len(fire_times):
                    break
        todo = [t for t in fire_times if t not in done]
        logger.info(
            "job %r: backfilling %d fire times from %s to %s (%d done before)",
            job_id,
            len(todo),
            first,
            last,
            len(fire_times) - len(todo),
        )
        executor = self.executors[job.executor]
        runs: list[Run] = []
        for scheduled in todo:
            # An id of its own kind: pause_after_failures leaves backfill runs out.
            run = Run(
                id=backfill_run_id(), job_id=job.id, scheduled_time=scheduled, scheduler_id=self.id
            )
            _reporting.submitted(self._hub, run, self._now())
            hook = self._run_hook
            if hook is None:
                finished, exc = await call_job(job, run, executor, self._now)
            else:
                finished, exc = await hook(job, run, executor, self._now, "backfill")
            await self._record_outcome(finished)
            _reporting.finished(self._hub, job, finished, exc)
            runs.append(finished)
        return runs

    async def explain(self, job_id: str, limit: int = 10) -> Explanation:
        """Why the job ran, or did not, at its last ``limit`` fire times.

        Read from the job as stored and its run history: each fire time's outcome and
        attempts with the reason in words (late and by how much, coalesced, missed
        beyond ``misfire_grace_time``, skipped or waiting by the overlap policy,
        abandoned and rerun, cancelled), fire times that left no record (the job was
        paused then), and the job's state now (paused with its note, due but not
        acquired, waiting for a free slot). ``str()`` of the result is readable text;
        ``horae explain JOB_ID`` prints the same.

        Example::

            print(await scheduler.explain("nightly-report"))

        Raises:
            JobLookupError: no job has that id, and no run of one is recorded.
        """
        self._check_usable("explain")
        return await explain_job(
            self.store, job_id, now=self._now(), timezone=self.timezone, limit=limit
        )

    async def print_jobs(self, out: IO[str] | None = None) -> None:
        """Print a table of the jobs (id, name, trigger, next run time) to ``out``."""
        from horae._format import format_jobs

        text = format_jobs(await self.get_jobs(), self.timezone, self._now())
        print(text, file=out if out is not None else sys.stdout)

    async def run_job(
        self,
        func: Callable[..., Any] | str,
        *,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        executor: str | None = None,
        timeout: float | timedelta | None = None,
    ) -> Any:
        """Run ``func`` now, outside any schedule, and return what it returns.

        The run goes through the executor and publishes its events like any other.

        Raises:
            Exception: whatever ``func`` raised (a ``TimeoutError`` after ``timeout``).
        """
        if self._state != "running":
            raise SchedulerNotRunningError("run_job() needs a running scheduler")
        now = self._now()
        options = {
            "args": args,
            "kwargs": kwargs,
            "id": f"run_job-{uuid.uuid4().hex}",
            "executor": executor,
            "timeout": timeout,
            "next_run_time": now,
        }
        job = self._build_job(func, None, options, {})
        run = Run(job_id=job.id, scheduled_time=now, scheduler_id=self.id)
        _reporting.submitted(self._hub, run, now)
        runner = self.executors[job.executor]
        hook = self._run_hook
        if hook is None:
            finished, exc = await call_job(job, run, runner, self._now)
        else:
            finished, exc = await hook(job, run, runner, self._now, "run_job")
        _reporting.finished(self._hub, job, finished, exc)
        if exc is not None:
            raise exc
        return finished.result


def _check_actor(actor: object) -> str:
    if not isinstance(actor, str):
        raise JobArgumentError(f"actor: {actor!r} is not a string")
    return actor


#: The most fire times one backfill() call runs.
_BACKFILL_LIMIT = 10_000
#: The most run records backfill() reads to find the fire times that succeeded: far more
#: than stores keep by default (run_retention=100 finished runs per job).
_BACKFILL_HISTORY = 100_000


def _implicit_start(trigger: Trigger | str | None, trigger_args: Mapping[str, Any]) -> bool:
    """Whether ``add_job`` was given an interval without a start date (``"interval"``
    without ``start_date``, or with ``start_date=None``; an :class:`IntervalTrigger` built
    without one): it starts from now, anew at every call."""
    if isinstance(trigger, IntervalTrigger):
        # getattr: one unpickled from an older horae has no such attribute.
        return getattr(trigger, "start_defaulted", False)
    return trigger == "interval" and trigger_args.get("start_date") is None


def _same_schedule(old: Trigger, new: Trigger, *, implicit_start: bool) -> bool:
    """Whether two triggers give the same fire times; with ``implicit_start``, an
    interval trigger's start aside (``add_job(f, "interval", ...)`` starts it from now,
    at every call). A start date given explicitly that changed is a new schedule."""
    if old == new:
        return True
    if implicit_start and isinstance(old, IntervalTrigger) and isinstance(new, IntervalTrigger):
        return new.starting_at(old.start_date) == old
    return False
