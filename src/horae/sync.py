"""Scheduler: the blocking facade over :class:`AsyncScheduler` for sync programs.

It holds no scheduling logic of its own: :meth:`Scheduler.start` runs an
:class:`AsyncScheduler` on an event loop in a background thread (through an anyio
blocking portal), and every verb forwards to it.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime, timedelta, tzinfo
from typing import IO, Any, Literal, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from horae._building import UNSET
from horae._clock import Clock
from horae._execution import in_job
from horae._explain import Explanation
from horae.errors import SchedulerNotRunningError, SchedulerRunningError
from horae.events import EVENT_ALL, Listener
from horae.executors.base import Executor
from horae.jobs import Job, JobDefaults, Retry, Run
from horae.scheduler import AsyncScheduler, Role
from horae.stores.base import SchedulerInfo, Store
from horae.triggers.base import Trigger

logger = logging.getLogger("horae.scheduler")

__all__ = ["Scheduler"]

T = TypeVar("T")


class _Terminate(BaseException):
    """SIGTERM arrived while ``Scheduler.run_forever`` blocked."""


def _raise_terminate(signum: int, frame: Any) -> None:
    raise _Terminate


class Scheduler:
    """A scheduler for programs without an event loop of their own.

    ``start()`` runs it in a background thread and returns (APScheduler 3's
    ``BackgroundScheduler``); ``run_forever()`` blocks until :meth:`shutdown` or Ctrl+C
    (``BlockingScheduler``). Jobs added before ``start()`` are kept until it starts.

    Example::

        scheduler = Scheduler()
        scheduler.add_job(backup, "cron", hour=3)
        scheduler.start()
        ...
        scheduler.shutdown()

    Takes the arguments of :class:`AsyncScheduler`, plus ``backend`` (``"asyncio"`` or
    ``"trio"``) for the event loop of the background thread.

    Jobs returned here have async verbs (``await job.pause()``) bound to the underlying
    :class:`AsyncScheduler`; from sync code, use this scheduler's verbs with the job's id.
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
        backend: Literal["asyncio", "trio"] = "asyncio",
    ) -> None:
        self.async_scheduler = AsyncScheduler(
            store,
            executors=executors,
            job_defaults=job_defaults,
            timezone=timezone,
            role=role,
            clock=clock,
            scheduler_id=scheduler_id,
            lease_duration=lease_duration,
            batch_size=batch_size,
            share_events=share_events,
        )
        self._backend = backend
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._scheduler_cm: AbstractContextManager[AsyncScheduler] | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Scheduler({self.async_scheduler!r})"

    def __enter__(self) -> Scheduler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.running:
            self.shutdown()

    @property
    def running(self) -> bool:
        """Whether the scheduler has started and not stopped."""
        return self._portal is not None

    @property
    def id(self) -> str:
        """The scheduler's id."""
        return self.async_scheduler.id

    def start(self) -> None:
        """Start the scheduler in a background thread and return.

        Raises:
            SchedulerRunningError: it is running already.
        """
        with self._lock:
            if self._portal is not None:
                raise SchedulerRunningError("start(): this scheduler is running already")
            portal_cm = start_blocking_portal(self._backend, name="horae-scheduler")
            portal = portal_cm.__enter__()
            scheduler_cm = portal.wrap_async_context_manager(self.async_scheduler)
            try:
                scheduler_cm.__enter__()
            except BaseException as exc:
                portal_cm.__exit__(type(exc), exc, exc.__traceback__)
                raise
            self._portal_cm, self._portal, self._scheduler_cm = portal_cm, portal, scheduler_cm
            self._stopped.clear()

    def shutdown(self, wait: bool = True, *, grace: float | None = None) -> None:
        """Stop the scheduler, waiting for running jobs unless ``wait=False``.

        With ``grace``, it waits at most that many seconds, then cancels what is left
        (see :meth:`AsyncScheduler.shutdown`).

        Raises:
            SchedulerNotRunningError: it is not running.
        """
        with self._lock:
            portal, scheduler_cm, portal_cm = self._portal, self._scheduler_cm, self._portal_cm
            if portal is None or scheduler_cm is None or portal_cm is None:
                raise SchedulerNotRunningError("shutdown(): this scheduler is not running")
            self._portal = self._scheduler_cm = self._portal_cm = None
        if in_job():
            # Called by a job in one of the scheduler's threads: waiting here for the runs
            # to end would wait for this very job. Another thread finishes the shutdown
            # once the job has returned.
            threading.Thread(
                target=self._finish_shutdown,
                args=(portal, scheduler_cm, portal_cm, wait, grace),
                name="horae-shutdown",
            ).start()
            return
        self._finish_shutdown(portal, scheduler_cm, portal_cm, wait, grace)

    def _finish_shutdown(
        self,
        portal: BlockingPortal,
        scheduler_cm: AbstractContextManager[AsyncScheduler],
        portal_cm: AbstractContextManager[BlockingPortal],
        wait: bool,
        grace: float | None = None,
    ) -> None:
        try:
            if self.async_scheduler.running:
                portal.call(functools.partial(self.async_scheduler.shutdown, wait, grace=grace))
            scheduler_cm.__exit__(None, None, None)
        finally:
            portal_cm.__exit__(None, None, None)
            self._stopped.set()

    def run_forever(self, *, grace: float = 30.0) -> None:
        """Start the scheduler and block until :meth:`shutdown`, Ctrl+C or SIGTERM.

        On SIGINT or SIGTERM (in the main thread) it stops gracefully: no more jobs are
        acquired, running jobs get up to ``grace`` seconds, then the rest are cancelled
        (see :meth:`AsyncScheduler.run_forever`).
        """
        previous: Any = None
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            previous = signal.signal(signal.SIGTERM, _raise_terminate)
        try:
            self.start()
            self._stopped.wait()
        except (KeyboardInterrupt, _Terminate):
            logger.warning(
                "scheduler %s: stopping (waiting up to %g s for running jobs)", self.id, grace
            )
        finally:
            if in_main:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
            if self.running:
                self.shutdown(grace=grace)

    def _call(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        call = functools.partial(func, *args, **kwargs)
        portal = self._portal
        if portal is None:
            # Not started: the async scheduler keeps such jobs in memory until it starts,
            # which needs no event loop of ours; a throwaway one runs the call.
            return anyio.run(call, backend=self._backend)
        return portal.call(call)

    # Every verb below only forwards to AsyncScheduler; see its docstrings.

    def add_job(
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
        """Schedule ``func``; see :meth:`AsyncScheduler.add_job`."""
        job: Job = self._call(
            self.async_scheduler.add_job,
            func,
            trigger,
            args=args,
            kwargs=kwargs,
            id=id,
            name=name,
            replace_existing=replace_existing,
            executor=executor,
            coalesce=coalesce,
            max_instances=max_instances,
            misfire_grace_time=misfire_grace_time,
            jitter=jitter,
            timeout=timeout,
            retry=retry,
            overlap=overlap,
            on_crash=on_crash,
            max_runs=max_runs,
            pause_after_failures=pause_after_failures,
            next_run_time=next_run_time,
            metadata=metadata,
            actor=actor,
            **trigger_args,
        )
        return job

    def add_jobs(
        self,
        specs: Sequence[Mapping[str, Any]],
        *,
        replace_existing: bool = False,
        actor: str = "",
    ) -> list[Job]:
        """Add many jobs in one store round trip; see :meth:`AsyncScheduler.add_jobs`."""
        jobs: list[Job] = self._call(
            self.async_scheduler.add_jobs, specs, replace_existing=replace_existing, actor=actor
        )
        return jobs

    def scheduled_job(
        self, trigger: Trigger | str | None = None, **options: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator adding a job when the scheduler starts; see
        :meth:`AsyncScheduler.scheduled_job`."""
        return self.async_scheduler.scheduled_job(trigger, **options)

    def get_job(self, job_id: str) -> Job:
        """The job with that id; see :meth:`AsyncScheduler.get_job`."""
        job: Job = self._call(self.async_scheduler.get_job, job_id)
        return job

    def get_jobs(self) -> list[Job]:
        """Every job; see :meth:`AsyncScheduler.get_jobs`."""
        jobs: list[Job] = self._call(self.async_scheduler.get_jobs)
        return jobs

    def modify_job(self, job_id: str, *, actor: str = "", **changes: Any) -> Job:
        """Change a job's options; see :meth:`AsyncScheduler.modify_job`."""
        job: Job = self._call(self.async_scheduler.modify_job, job_id, actor=actor, **changes)
        return job

    def reschedule_job(
        self, job_id: str, trigger: Trigger | str, *, actor: str = "", **trigger_args: Any
    ) -> Job:
        """Give a job a new trigger; see :meth:`AsyncScheduler.reschedule_job`."""
        job: Job = self._call(
            self.async_scheduler.reschedule_job, job_id, trigger, actor=actor, **trigger_args
        )
        return job

    def pause_job(self, job_id: str, *, note: str | None = None, actor: str = "") -> Job:
        """Pause a job; see :meth:`AsyncScheduler.pause_job`."""
        job: Job = self._call(self.async_scheduler.pause_job, job_id, note=note, actor=actor)
        return job

    def backfill(
        self,
        job_id: str,
        start: datetime | str,
        end: datetime | str,
        *,
        rerun_succeeded: bool = False,
    ) -> list[Run]:
        """Run the fire times of a past window; see :meth:`AsyncScheduler.backfill`."""
        runs: list[Run] = self._call(
            self.async_scheduler.backfill, job_id, start, end, rerun_succeeded=rerun_succeeded
        )
        return runs

    def explain(self, job_id: str, limit: int = 10) -> Explanation:
        """Why the job ran or did not; see :meth:`AsyncScheduler.explain`."""
        explanation: Explanation = self._call(self.async_scheduler.explain, job_id, limit)
        return explanation

    def resume_job(self, job_id: str, *, actor: str = "") -> Job:
        """Resume a job; see :meth:`AsyncScheduler.resume_job`."""
        job: Job = self._call(self.async_scheduler.resume_job, job_id, actor=actor)
        return job

    def remove_job(self, job_id: str, *, actor: str = "") -> None:
        """Remove a job; see :meth:`AsyncScheduler.remove_job`."""
        self._call(self.async_scheduler.remove_job, job_id, actor=actor)

    def remove_all_jobs(self, *, actor: str = "") -> None:
        """Remove every job; see :meth:`AsyncScheduler.remove_all_jobs`."""
        self._call(self.async_scheduler.remove_all_jobs, actor=actor)

    def get_runs(self, job_id: str, limit: int = 100) -> list[Run]:
        """A job's recent runs; see :meth:`AsyncScheduler.get_runs`."""
        runs: list[Run] = self._call(self.async_scheduler.get_runs, job_id, limit)
        return runs

    def get_schedulers(self) -> list[SchedulerInfo]:
        """The schedulers sharing the store; see :meth:`AsyncScheduler.get_schedulers`."""
        schedulers: list[SchedulerInfo] = self._call(self.async_scheduler.get_schedulers)
        return schedulers

    def print_jobs(self, out: IO[str] | None = None) -> None:
        """Print a table of the jobs."""
        self._call(self.async_scheduler.print_jobs, out)

    def run_job(
        self,
        func: Callable[..., Any] | str,
        *,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        executor: str | None = None,
        timeout: float | timedelta | None = None,
    ) -> Any:
        """Run ``func`` now and return its value; see :meth:`AsyncScheduler.run_job`."""
        if self._portal is None:
            raise SchedulerNotRunningError("run_job() needs a started scheduler; call start()")
        return self._call(
            self.async_scheduler.run_job,
            func,
            args=args,
            kwargs=kwargs,
            executor=executor,
            timeout=timeout,
        )

    def pause(self) -> None:
        """Stop running due jobs until :meth:`resume`."""
        self._call(self.async_scheduler.pause)

    def resume(self) -> None:
        """Resume running due jobs."""
        self._call(self.async_scheduler.resume)

    def add_listener(self, callback: Listener, mask: int = EVENT_ALL) -> None:
        """Call ``callback(event)`` for matching events (in the scheduler's thread)."""
        self.async_scheduler.add_listener(callback, mask)

    def remove_listener(self, callback: Listener) -> None:
        """Stop calling a listener."""
        self.async_scheduler.remove_listener(callback)
