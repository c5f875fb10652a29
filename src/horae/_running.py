"""The scheduling loop and the runs it starts: the half of AsyncScheduler that runs.

``AsyncScheduler`` (scheduler.py) owns the lifecycle and the job verbs; this mixin holds
the loop (acquire due jobs -> plan -> release -> start runs), how runs are started and
recorded, the broadcast of events to other schedulers, and the idleness that
``horae.testing.wait_idle`` waits for. The state it uses is created by
``AsyncScheduler.__init__`` and declared below.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import os
import random
import socket
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from datetime import datetime, timedelta
from typing import Any, Literal

import anyio
import anyio.lowlevel
import attrs
from anyio.abc import TaskGroup, TaskStatus

from horae import _reporting
from horae._clock import Clock
from horae._execution import RunHook, call_job, ended
from horae._planning import fired_since, is_finishing, plan_release, reruns_abandoned
from horae.errors import DeserializationError, HoraeError, JobLookupError
from horae.events import (
    Event,
    EventHub,
    JobCancelRequested,
    JobModified,
    JobRemoved,
    StoreFailed,
    StoreRecovered,
)
from horae.executors.base import Executor
from horae.jobs import Job, Run, RunOutcome
from horae.stores.base import Lease, Release, SchedulerInfo, Store

logger = logging.getLogger("horae.scheduler")

#: A job whose trigger raised, or that could not be read, is looked at again after this long.
_FAILED_JOB_BACKOFF = timedelta(seconds=60)
_STORE_ERROR_BACKOFF = (0.5, 30.0)
#: Events waiting for a broadcast beyond this many are dropped (and counted).
_OUTBOX_LIMIT = 100_000
#: Seconds a stopping scheduler waits for the store to remove its record.
_UNREGISTER_TIMEOUT = 5.0


_FAILURES = frozenset({RunOutcome.ERROR, RunOutcome.TIMEOUT})
# The outcomes pause_after_failures looks at: the others neither fail nor succeed.
_COUNTED = frozenset({RunOutcome.SUCCESS, RunOutcome.ERROR, RunOutcome.TIMEOUT})


#: The namespace of the ids of backfill runs (see backfill_run_id).
_BACKFILL_NAMESPACE = uuid.UUID("3b0e8d5a-7c41-4f2e-9a6d-5e1f0c2b8a47")


def backfill_run_id() -> uuid.UUID:
    """A new id for a run of ``backfill()``: unique as a random one, but name-based
    (UUID version 5), where every other run's id is random (version 4).

    That is how a run history tells backfill runs from the job's own, with nothing more
    stored: ``pause_after_failures`` counts the job's own runs only.
    """
    return uuid.uuid5(_BACKFILL_NAMESPACE, uuid.uuid4().hex)


def is_backfill_run(run: Run) -> bool:
    """Whether ``run`` is a run of ``backfill()`` (see :func:`backfill_run_id`)."""
    return run.id.version == 5


#: The most run records pause_after_failures reads to count failures in a row: more than
#: stores keep by default (run_retention=100 finished runs per job).
_PAUSE_HISTORY = 1000


def _failures_in_a_row(runs: list[Run], limit: int, since: datetime | None) -> tuple[int, bool]:
    """How many of the latest fire times in ``runs`` (a run history, newest first)
    failed in a row, counting up to ``limit``; and whether that count is final (it
    reached ``limit``, or a success or the last resume at ``since`` ended it) rather
    than cut short by the end of ``runs``."""
    failed: set[datetime] = set()
    for run in runs:
        if is_backfill_run(run):
            continue  # asked for by hand: neither a failure of the job nor a success
        if since is not None and run.scheduled_time <= since:
            # Fire times before the last resume_job() are forgiven, even those whose
            # run ended after it. A run that ended before it ends the count: the
            # records after it in the history ended earlier still.
            if run.finished_at is not None and run.finished_at <= since:
                return len(failed), True
            continue
        if run.outcome is None or run.outcome not in _COUNTED:
            continue  # in flight, or never ran: neither a failure nor a success
        if run.outcome is RunOutcome.SUCCESS:
            return len(failed), True
        failed.add(run.scheduled_time)
        if len(failed) >= limit:
            return len(failed), True
    return len(failed), False


@functools.cache
def horae_version() -> str:
    """The installed horae's version, for the register of schedulers (``""`` if unknown)."""
    try:
        return importlib.metadata.version("horae")
    except importlib.metadata.PackageNotFoundError:
        return ""


def _finishing(job: Job, now: datetime) -> bool:
    """:func:`is_finishing`, for a run's end: a trigger that raises is logged and taken
    for one with fire times left (the job stays), so that the run's outcome is stored."""
    try:
        return is_finishing(job, now)
    except Exception:
        logger.exception(
            "job %r: its trigger failed to give its next fire time; the job is kept", job.id
        )
        return False


def _kept_for_a_run_elsewhere(release: Release) -> bool:
    """Whether ``release`` keeps its job past its trigger's end only for runs that were
    in flight when it was acquired, none started by this release: runs whose finish may
    have declined to remove the job because it was leased then.

    Only ``plan_release`` gives a release no next run time without removing its job:
    when the trigger has ended and a run of the job may still be rerun.
    """
    return (
        not release.remove
        and release.next_run_time is None
        and not release.started
        and release.lease.running > 0
    )


def _retry_delay(job: Job, attempt: int) -> timedelta:
    """How long the next attempt after ``attempt`` waits (a rerun of an abandoned run
    without a retry policy: not at all)."""
    return job.retry.delay(attempt) if job.retry is not None else timedelta(0)


class _RunLoop:
    """The loop and the runs of an :class:`~horae.AsyncScheduler` (a mixin)."""

    # Created by AsyncScheduler.__init__.
    id: str
    role: Literal["scheduler", "client"]
    store: Store
    executors: dict[str, Executor]
    share_events: bool
    _clock: Clock
    _hub: EventHub
    _state: Literal["initial", "starting", "running", "stopping", "stopped"]
    _paused: bool
    _batch_size: int
    _lease_duration: float
    _task_group: TaskGroup | None
    _runs: TaskGroup | None
    _runs_close: anyio.Event
    _loop_done: anyio.Event
    _runs_done: anyio.Event
    _wakeup: anyio.Event
    _loop_waiting: bool
    _deadline: datetime | None
    _in_flight: int
    _clock_waits: dict[uuid.UUID, datetime]
    _idle_watchers: int
    _idle_changed: anyio.Event
    _outbox: list[Event]
    _outbox_ready: anyio.Event
    _outbox_closed: bool
    _outbox_dropped: int
    _sending: bool
    _broadcast_failing: bool
    _live_runs: dict[uuid.UUID, Run]
    _lost_runs: set[uuid.UUID]
    _pending_runs: set[uuid.UUID]
    _store_down_since: datetime | None
    _store_back_at: datetime | None
    _keeping: bool
    _keep_deadline: datetime | None
    _keep_wake: anyio.Event
    # The register of schedulers (heartbeats): whether the store keeps one, when this
    # scheduler started, until when the lease keeper's rounds need not write one (one was
    # just written), the state the last one carried.
    _registers: bool
    _started_at: datetime | None
    _beat_due: datetime | None
    _beat_state: str
    _beat_failing: bool
    # Runs of cancel_other jobs that may be cancelled, and why those that were.
    _cancel_scopes: dict[uuid.UUID, tuple[Run, anyio.CancelScope]]
    _cancel_reasons: dict[uuid.UUID, str]
    # Jobs this scheduler asked the store to hold (Release.hold_while_running) since it
    # last acquired them: the end of a run of one wakes the loop (see _may_be_held).
    _holding: set[str]
    # What wraps every run's call (horae.tracing), or None: call_job directly.
    _run_hook: RunHook | None
    # Told how many jobs each acquisition leased (horae.metrics); None costs one check.
    _on_acquired: Callable[[int], None] | None

    def _now(self) -> datetime:
        return self._clock.now()

    # ------------------------------------------------------- events to others

    def _share_event(self, event: Event) -> None:
        if self._outbox_closed:
            return
        if len(self._outbox) >= _OUTBOX_LIMIT:
            # The store is not keeping up (or is down): never let the backlog grow
            # without bound; one warning per episode.
            if not self._outbox_dropped:
                logger.warning(
                    "scheduler %s: events for other schedulers pile up faster than the "
                    "store takes them; dropping them until it catches up",
                    self.id,
                )
            self._outbox_dropped += 1
            return
        self._outbox.append(event)
        if len(self._outbox) == 1:
            self._outbox_ready.set()

    def _close_outbox(self) -> None:
        self._outbox_closed = True
        self._outbox_ready.set()

    async def _send_events(self) -> None:
        """Broadcast the events collected since the last call, one batch per call.

        While one batch is on its way, the next collects: under load, each store round
        trip carries many events.
        """
        store = self.store
        try:
            while True:
                await self._outbox_ready.wait()
                # Let the rest of this loop turn (the runs of one batch) join the batch.
                await anyio.lowlevel.checkpoint()
                self._outbox_ready = anyio.Event()
                batch, self._outbox = self._outbox, []
                if batch:
                    await self._broadcast(store, batch)
                if self._outbox_closed and not self._outbox:
                    return
        finally:
            self._outbox.clear()
            self._notify_idle()

    async def _broadcast(self, store: Store, batch: list[Event]) -> None:
        self._sending = True
        try:
            await store.broadcast(batch)
        except Exception as exc:
            if not self._broadcast_failing:
                logger.warning(
                    "scheduler %s: could not send events to other schedulers (%s); "
                    "they miss events until the store takes them again",
                    self.id,
                    exc,
                )
                self._broadcast_failing = True
        else:
            if self._broadcast_failing:
                logger.warning("scheduler %s: sending events to other schedulers again", self.id)
                self._broadcast_failing = False
            if self._outbox_dropped:
                logger.warning(
                    "scheduler %s: %d events were not sent to other schedulers",
                    self.id,
                    self._outbox_dropped,
                )
                self._outbox_dropped = 0
        finally:
            self._sending = False
            self._notify_idle()

    # ----------------------------------------------------------- store health

    def _store_failed(self, exc: BaseException, what: str) -> None:
        """A store call failed: log and announce the outage once, not once per retry."""
        if self._store_down_since is not None:
            logger.debug("scheduler %s: %s failed again: %r", self.id, what, exc)
            return
        now = self._clock.now()
        self._store_down_since = now
        logger.warning(
            "scheduler %s: the store failed while %s (%s: %s); retrying with backoff "
            "until it answers (runs already going on continue)",
            self.id,
            what,
            type(exc).__name__,
            exc,
            exc_info=exc,
        )
        self._hub.publish(
            StoreFailed(
                timestamp=now,
                origin=self.id,
                scheduler_id=self.id,
                error=f"{what}: {type(exc).__name__}: {exc}",
                exception=exc,
            )
        )

    def _store_ok(self) -> None:
        since = self._store_down_since
        if since is None:
            return
        self._store_down_since = None
        now = self._clock.now()
        self._store_back_at = now
        logger.warning(
            "scheduler %s: the store answers again (after %.1f s)",
            self.id,
            (now - since).total_seconds(),
        )
        self._hub.publish(
            StoreRecovered(
                timestamp=now, origin=self.id, scheduler_id=self.id, downtime=now - since
            )
        )

    # --------------------------------------------------------------- the loop

    def _wake(self) -> None:
        self._wakeup.set()

    def _wake_for(self, next_run_time: datetime | None) -> None:
        # Waking the loop costs a store round trip or two (acquire, next run time), so
        # only a fire time earlier than the one it sleeps until wakes it. While the loop
        # is not asleep it may be reading a next run time from before this change: wake.
        if next_run_time is None:
            return
        if self._loop_waiting and self._deadline is not None and next_run_time >= self._deadline:
            return
        self._wake()

    async def _host_runs(self, *, task_status: TaskStatus[TaskGroup]) -> None:
        # Owner of the runs: a task group of its own, so shutdown(wait=False) can cancel
        # the runs without cancelling the loop or the listeners.
        try:
            async with anyio.create_task_group() as runs:
                task_status.started(runs)
                await self._runs_close.wait()
        finally:
            self._runs_done.set()
            self._keep_wake.set()

    async def _loop(self) -> None:
        clock = self._clock
        store = self.store
        backoff = 0.0
        try:
            while self._state in ("starting", "running"):
                wakeup = self._wakeup = anyio.Event()
                deadline: datetime | None = None
                if not self._paused:
                    try:
                        now = clock.now()
                        leases = await store.acquire_jobs(
                            self.id, now, self._batch_size, self._lease_duration
                        )
                        observe = self._on_acquired
                        if observe is not None:
                            observe(len(leases))
                        if leases:
                            await self._process(leases, now)
                            if len(leases) >= self._batch_size:
                                await anyio.lowlevel.checkpoint()
                                continue
                        deadline = await store.next_run_time()
                        backoff = 0.0
                        self._store_ok()
                    except Exception as exc:
                        backoff = min(
                            max(backoff * 2, _STORE_ERROR_BACKOFF[0]), _STORE_ERROR_BACKOFF[1]
                        )
                        self._store_failed(exc, "acquiring due jobs")
                        deadline = clock.now() + timedelta(seconds=backoff)
                self._loop_waiting = True
                self._deadline = deadline
                self._notify_idle()
                try:
                    await clock.wait(deadline, wakeup)
                finally:
                    self._loop_waiting = False
        finally:
            self._loop_done.set()
            self._notify_idle()

    async def _process(self, leases: list[Lease], now: datetime) -> None:
        releases: list[Release] = []
        failed: list[tuple[Lease, BaseException]] = []
        backed_off = now + _FAILED_JOB_BACKOFF
        for lease in leases:
            if lease.job is None:
                # The store could not read the job back (a corrupted row, a callable that
                # no longer imports): report it and look again later; never delete it.
                failed.append((lease, lease.error or HoraeError("unreadable job")))
                releases.append(Release(lease=lease, next_run_time=backed_off))
                continue
            try:
                release = plan_release(lease, now, self.id)
            except Exception as error:
                # A trigger that raises must not stop the scheduler: report it, and look
                # at the job again later rather than spinning on it.
                failed.append((lease, error))
                release = Release(lease=lease, next_run_time=backed_off)
            releases.append(release)
        rejected = await self.store.release_jobs(self.id, releases)
        hub = self._hub
        for lease, failure in failed:
            _reporting.job_failed(hub, lease, failure, now, backed_off)
        to_start: deque[tuple[Job, Run]] = deque()
        # Jobs kept past their trigger's end for a run in flight elsewhere (see
        # _remove_if_idle).
        kept: list[str] = []
        for release in releases:
            job = release.lease.job
            if job is None:
                continue
            if job.id in rejected:
                logger.warning(
                    "job %r: the store refused this scheduler's release (the job was removed "
                    "meanwhile, or its lease expired and another scheduler took it over); "
                    "its due fire times are not run here",
                    job.id,
                )
                continue
            for run in release.finished:
                _reporting.not_run(hub, run)
            if release.hold_while_running:
                self._holding.add(job.id)
            elif self._holding:
                self._holding.discard(job.id)  # acquired: not held any more
            if (
                job.overlap == "cancel_other"
                and not release.started
                and release.next_run_time is not None
                and release.next_run_time <= now
            ):
                self._request_cancel(job.id, release.next_run_time, now)
            if release.remove and hub.wanted & JobRemoved.code:
                hub.publish(JobRemoved(timestamp=now, job_id=job.id, origin=self.id))
            if release.next_run_time is None and _kept_for_a_run_elsewhere(release):
                kept.append(job.id)  # (the first test spares the common case a call)
            for run in release.started:
                _reporting.submitted(hub, run, now)
                to_start.append((job, run))
        if to_start:
            runs = self._runs
            assert runs is not None
            self._in_flight += len(to_start)
            # Owner: the runs task group (see _host_runs).
            runs.start_soon(self._drain, to_start)
        for job_id in kept:
            if await self._remove_if_idle(job_id):
                self._job_removed(job_id)

    async def _remove_if_idle(self, job_id: str) -> bool:
        """Ask the store to remove a job kept past its trigger's end, should nothing of
        it be left to happen (``remove_job_if_idle``); return whether it did. A failure
        is a warning.

        A job kept for the reruns of its runs must go once its trigger has ended and its
        last run has ended, whichever ends last, however the schedulers sharing the store
        interleave. The rules:

        - A finish of a run of such a job asks the store to remove the job in the same
          step (``remove_finished_job``) if the trigger had ended when the finish was
          sent, and else calls this once the finish is stored, if the trigger has ended
          by then (see ``_record_outcome``).
        - A release that keeps the job because a run of it was in flight when acquired
          (it acquired the last fire time) calls this once it is stored (``_process``).

        The store removes the job only if it is neither leased nor held and has no run in
        flight, and makes each of these steps atomic with respect to the others (one
        lock, script or write transaction; for PostgreSQL, where a removal locks the job
        row and then decides in a snapshot taken under that lock, see ``_LOCK_JOBS``).
        Let R be the release keeping the job, and F the finish of the last of the runs
        in flight when R's lease was acquired (which was before F was stored, at the
        last fire time or later). (a) F is stored after R: if F was sent after the last
        fire time it asked for the removal, and finds the job released; if before, its
        scheduler calls this once F is stored, which is after R's acquisition, so after
        the last fire time: that call finds the job released and the run gone. (b) F is
        stored before R: F, or the call after it, may have found the job leased by R and
        declined; R's call here, once R is stored, finds the run gone and removes the
        job. The fire time being the last, nothing puts the job back meanwhile. (The
        clocks of the two schedulers must agree: one running behind by more than a
        finish's duration may not see the trigger ended in case (a).)
        """
        try:
            return await self.store.remove_job_if_idle(job_id)
        except Exception as exc:
            logger.warning(
                "job %r: could not ask the store to remove it now that its trigger has "
                "ended (%s: %s); unless a run of it still in flight removes it at its end, "
                "it stays, looking paused, until removed with remove_job()",
                job_id,
                type(exc).__name__,
                exc,
            )
            return False

    async def _drain(self, queue: deque[tuple[Job, Run]]) -> None:
        """Run queued runs in this task while they finish without suspending.

        A task per run costs more than a no-op coroutine job itself, so a batch of runs
        starts as one task. Each run's coroutine is stepped here; the first run that
        suspends (awaits real I/O, sleeps, goes to a thread) keeps this task, and the rest
        of the queue moves on to a new task at once: no run waits for another. Every run
        still starts and ends in one task, so its cancel scopes stay valid.
        """
        inline = 0
        try:
            while queue:
                job, run = queue.popleft()
                coro = self._execute(job, run)
                try:
                    suspended_on = coro.send(None)
                except StopIteration:
                    inline += 1
                    if inline % 64 == 0:
                        await anyio.lowlevel.checkpoint()  # let the event loop breathe
                    continue
                # It goes on: from now on the keeper renews its lease in the store. (A run
                # that ends without suspending never needs it: this spares the burst.)
                self._live_runs[run.id] = run
                if queue:
                    assert self._runs is not None
                    self._runs.start_soon(self._drain, queue)
                    queue = deque()
                await _Resume(coro, suspended_on)
        finally:
            if queue:
                # Cancelled (shutdown without waiting) before these runs started.
                with anyio.CancelScope(shield=True):
                    for job, run in queue:
                        try:
                            await self._abandon(job, run)
                        except Exception:
                            logger.exception(
                                "job %r: storing that run %s was abandoned failed",
                                run.job_id,
                                run.id,
                            )
                        finally:
                            self._forget_run(run.id)
                            self._in_flight -= 1
                self._notify_idle()

    async def _attempt(
        self, job: Job, run: Run, start_at: datetime | None
    ) -> tuple[Run, BaseException | None] | None:
        """One attempt of ``run``: wait for its time, call the job; ``None`` if another
        scheduler took the run over meanwhile."""
        if start_at is not None:
            await self._sleep_for_run(run, start_at)
            await self._confirm_held(run)
        elif job.jitter:
            await self._wait_jitter(job.jitter, run)
            await self._confirm_held(run)
        if self._lost_runs and run.id in self._lost_runs:
            # Another scheduler took it over while it waited: it decides.
            logger.warning(
                "job %r: attempt %d for %s is not started here: another "
                "scheduler took it over while it waited",
                job.id,
                run.attempt,
                run.scheduled_time,
            )
            return None
        logger.debug(
            "job %r: run for %s starts (attempt %d)", job.id, run.scheduled_time, run.attempt
        )
        hook = self._run_hook
        if hook is None:
            return await call_job(job, run, self.executors[job.executor], self._now)
        return await hook(job, run, self.executors[job.executor], self._now, "scheduled")

    async def _confirm_held(self, run: Run) -> None:
        """After a wait (a retry's backoff, jitter), make sure the run is still this
        scheduler's before it starts: a process that stalled through the wait (stopped,
        swapped out) may have lost it to another scheduler, and must not run it too.
        Renewing the lease tells (one store call); if the store fails, the run goes on
        (the keeper's renewals tell the same, later)."""
        expires_at = self._now() + timedelta(seconds=self._lease_duration)
        try:
            lost = await self.store.extend_runs(self.id, [run.id], expires_at)
        except Exception:
            return
        if run.id in lost:
            self._lost_runs.add(run.id)

    async def _cancellable_attempt(
        self, job: Job, run: Run, start_at: datetime | None
    ) -> tuple[Run, BaseException | None] | None:
        """:meth:`_attempt` for a ``cancel_other`` job: a newer fire time may cancel it
        (:meth:`_cancel_runs`), and it then ends ``cancelled``."""
        started_at = self._now()
        reason = self._cancel_reasons.pop(run.id, None)
        if reason is not None:
            # Asked for while the outcome of its previous attempt was being stored
            # (_record_cancellable_retry): it does not start.
            return (
                ended(
                    run,
                    started_at=None,
                    finished_at=started_at,
                    outcome=RunOutcome.CANCELLED,
                    error=reason,
                ),
                None,
            )
        result = None
        with anyio.CancelScope() as scope:
            self._cancel_scopes[run.id] = (run, scope)
            try:
                result = await self._attempt(job, run, start_at)
            finally:
                del self._cancel_scopes[run.id]
        reason = self._cancel_reasons.pop(run.id, None)
        if not scope.cancelled_caught:
            return result
        return (
            ended(
                run,
                started_at=started_at,
                finished_at=self._now(),
                outcome=RunOutcome.CANCELLED,
                error=reason or "cancelled",
            ),
            None,
        )

    async def _execute(self, job: Job, run: Run, start_at: datetime | None = None) -> None:
        """Run ``run`` of ``job`` (at ``start_at``, for a retry), then its retries."""
        overlap = job.overlap
        frees = overlap != "skip" and overlap != "allow_all"
        try:
            while True:
                try:
                    if overlap == "cancel_other":
                        attempt = await self._cancellable_attempt(job, run, start_at)
                    elif start_at is not None or job.jitter:
                        attempt = await self._attempt(job, run, start_at)
                    else:
                        # The common case, without a coroutine of its own: this is on
                        # every run's path (and nothing waited: it is still this
                        # scheduler's run).
                        logger.debug(
                            "job %r: run for %s starts (attempt %d)",
                            job.id,
                            run.scheduled_time,
                            run.attempt,
                        )
                        executor = self.executors[job.executor]
                        hook = self._run_hook
                        if hook is None:
                            attempt = await call_job(job, run, executor, self._now)
                        else:
                            attempt = await hook(job, run, executor, self._now, "scheduled")
                    if attempt is None:
                        return
                    finished, exc = attempt
                except anyio.get_cancelled_exc_class():
                    # Also while waiting out the jitter or a retry's backoff: the run is
                    # in flight in the store from the moment it was released, and must
                    # end there.
                    with anyio.CancelScope(shield=True):
                        await self._abandon(job, run)
                    raise
                if self._lost_runs and run.id in self._lost_runs:
                    logger.warning(
                        "job %r: the run for %s ended here (%s) after another scheduler "
                        "took it over; if that one recorded it first, its record stays",
                        job.id,
                        run.scheduled_time,
                        finished.outcome,
                    )
                retry = None if exc is None else self._next_attempt(job, finished, exc)
                if retry is None:
                    # A job kept past its trigger's end goes with its last run's outcome,
                    # in one store call: a process dying in between would leave it for
                    # good, looking paused.
                    kept = job if job.retry or job.on_crash else None
                    removed = await self._record_outcome(finished, finishing=kept)
                    # Asked once the outcome is stored: a hold asked for meanwhile is
                    # known by then, or comes after the store freed the slot (and then
                    # does not hold the job).
                    if frees and self._may_be_held(job, finished):
                        self._wake()
                    if finished.outcome is RunOutcome.CANCELLED:
                        _reporting.cancelled(self._hub, finished, finished.error or "")
                    else:
                        _reporting.finished(self._hub, job, finished, exc)
                    if removed:
                        self._job_removed(job.id)
                    elif job.pause_after_failures and finished.outcome in _FAILURES:
                        await self._pause_if_failing(job, finished)
                    return
                start_at = self._now() + _retry_delay(job, run.attempt)
                if overlap == "cancel_other":
                    held = await self._record_cancellable_retry(finished, retry)
                else:
                    held = await self._record_with_retry(finished, retry)
                retry_at = start_at if held else None
                _reporting.finished(self._hub, job, finished, exc, retry_at=retry_at)
                if not held:
                    return
                run = retry
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            logger.exception("job %r: recording the outcome of run %s failed", job.id, run.id)
        finally:
            self._forget_run(run.id)
            self._in_flight -= 1
            self._notify_idle()

    def _may_be_held(self, job: Job, run: Run) -> bool:
        """Whether ``job`` may have been held in the store until ``run`` of it ended;
        then the loop looks for due jobs, since the store frees the job but may wake only
        the other schedulers. A job is held only if a fire time found it busy (or waits
        in buffer_all's backlog): asked for by this scheduler, or by another at a fire
        time of the trigger that came during the run."""
        if self._holding and job.id in self._holding:
            self._holding.discard(job.id)
            return True
        return fired_since(job, run, self._now())

    def _job_removed(self, job_id: str) -> None:
        """The store removed a job kept past its trigger's end with its last run's
        outcome (``remove_finished_job``)."""
        if self._hub.wanted & JobRemoved.code:
            self._hub.publish(JobRemoved(timestamp=self._now(), job_id=job_id, origin=self.id))

    def _forget_run(self, run_id: uuid.UUID) -> None:
        self._live_runs.pop(run_id, None)
        if self._lost_runs:
            self._lost_runs.discard(run_id)

    def _next_attempt(self, job: Job, run: Run, exc: BaseException | None) -> Run | None:
        """The next attempt of a failed run, if the job's retry policy (or, for an
        abandoned run, its ``on_crash``) wants one."""
        policy = job.retry
        if run.outcome is RunOutcome.ABANDONED:
            wanted = reruns_abandoned(job, run.attempt)
        elif (
            policy is not None
            and run.outcome in (RunOutcome.ERROR, RunOutcome.TIMEOUT)
            and exc is not None
        ):
            wanted = policy.retries(run.attempt, exc)
        else:
            wanted = False
        if not wanted:
            return None
        return Run(
            job_id=run.job_id,
            scheduled_time=run.scheduled_time,
            scheduler_id=self.id,
            attempt=run.attempt + 1,
            coalesced=run.coalesced,
        )

    async def _abandon(self, job: Job, run: Run) -> None:
        """End a run the scheduler gave up on as it stopped (it was cancelled).

        When the job's retry policy retries abandoned runs, the run is handed over
        instead: its lease is made to expire now, and another scheduler sharing the store
        (or this one, started again) takes it over and retries it, as after a crash.
        """
        now = self._now()
        if reruns_abandoned(job, run.attempt):
            lost = await self.store.extend_runs(self.id, [run.id], now)
            if run.id not in lost:
                logger.warning(
                    "job %r: the run for %s was cut off by the shutdown; handed over for "
                    "its retry to the next scheduler that takes over this store's runs",
                    run.job_id,
                    run.scheduled_time,
                )
                return
        reason = "cancelled: the scheduler shut down without waiting for the run"
        given_up = ended(
            run,
            started_at=None,
            finished_at=now,
            outcome=RunOutcome.ABANDONED,
            error=reason,
        )
        if _finishing(job, now):
            # Its last fire time is past and nothing will rerun this run: the job goes
            # with the outcome, as after a run that ends.
            removed = await self.store.finish_run(given_up, remove_finished_job=True)
        else:
            await self.store.finish_run(given_up)
            # Its last fire time may have passed meanwhile (see _remove_if_idle).
            removed = _finishing(job, self._now()) and await self._remove_if_idle(job.id)
        _reporting.abandoned(self._hub, given_up, reason)
        if removed:
            self._job_removed(job.id)

    async def _wait_jitter(self, jitter: timedelta, run: Run) -> None:
        delay = random.uniform(0, jitter.total_seconds())
        await self._sleep_for_run(run, self._now() + timedelta(seconds=delay))

    async def _sleep_for_run(self, run: Run, until: datetime) -> None:
        # On the scheduler's clock, so that tests move it; wait_idle() counts such a run
        # as idle until the clock reaches ``until``.
        self._clock_waits[run.id] = until
        self._notify_idle()
        try:
            await self._clock.wait(until, anyio.Event())
        finally:
            del self._clock_waits[run.id]

    async def _record_with_retry(self, run: Run, retry: Run) -> bool:
        """Store ``run``'s outcome with its next attempt; return whether this scheduler
        holds the retry, which then replaces ``run`` among the runs it renews."""
        # Known before it is in flight: the keeper must not take it for a dead
        # scheduler's run should the reply of finish_run be lost.
        self._pending_runs.add(retry.id)
        try:
            held = await self._record_outcome(run, retry)
        finally:
            self._pending_runs.discard(retry.id)
        if held:
            self._forget_run(run.id)
            self._live_runs[retry.id] = retry
        return held

    async def _record_cancellable_retry(self, run: Run, retry: Run) -> bool:
        """:meth:`_record_with_retry` for a ``cancel_other`` job: a request to cancel that
        comes while the outcome is stored (no attempt is going on to cancel) is kept for
        the retry, which then ends ``cancelled`` without starting."""
        # A scope never entered: _cancel_runs finds the retry by it, and notes the reason.
        self._cancel_scopes[retry.id] = (retry, anyio.CancelScope())
        held = False
        try:
            held = await self._record_with_retry(run, retry)
        finally:
            del self._cancel_scopes[retry.id]
            if not held:
                self._cancel_reasons.pop(retry.id, None)
        return held

    async def _record_outcome(
        self,
        run: Run,
        retry: Run | None = None,
        *,
        wake: bool = False,
        finishing: Job | None = None,
    ) -> bool:
        """Store a finished run's outcome (and its retry), retrying while the store fails.

        A run whose outcome is never stored stays in flight in the store and keeps
        counting for max_instances, so giving up after one failure (a dropped
        connection) would stop the job for good. ``finish_run`` is keyed by the run's id,
        so retrying it is safe. While the scheduler stops, it gives up after a few tries
        rather than hang the shutdown.

        Returns whether ``retry`` is in flight held by this scheduler (the store puts it
        there only if ``run`` still was: another scheduler may have taken it over).
        With ``wake``, the loop looks for due jobs once the outcome is stored: the run's
        job may have been held until a run of it ended (overlap policies that buffer).
        With ``finishing`` (the run's job, kept for the reruns of its runs past its
        trigger's end) and no ``retry``, the job goes once nothing of it is left to
        happen, and this returns whether it did: if the trigger has ended when the
        outcome is sent (looked at again at every try: the store may have been down
        through the last fire time), the store removes it in the same step
        (``remove_finished_job``); if it ends while the outcome is being stored,
        ``_remove_if_idle`` follows (see there why no interleaving leaves the job). (If
        a reply is lost and the call repeated, the repeat finds the job gone and says
        ``False``: the removal then goes unannounced.)
        """
        delay = _STORE_ERROR_BACKOFF[0]
        failures = 0
        while True:
            # Outside the try: a trigger that raises is not a store failure to retry.
            last = retry is None and finishing is not None and _finishing(finishing, self._now())
            try:
                answer = False
                if retry is None:
                    if last:
                        answer = await self.store.finish_run(run, remove_finished_job=True)
                    else:
                        # The common case, as it was before remove_finished_job existed
                        # (stores wrapped by users need not know the keyword).
                        await self.store.finish_run(run)
                    if wake:
                        self._wake()
                else:
                    expires_at = self._now() + timedelta(seconds=self._lease_duration)
                    await self.store.finish_run(run, retry=retry, expires_at=expires_at)
                    lost = await self.store.extend_runs(self.id, [retry.id], expires_at)
                    answer = retry.id not in lost
                if failures:
                    self._store_ok()
                    logger.info("job %r: the outcome of run %s is stored", run.job_id, run.id)
            except Exception as exc:
                failures += 1
                stopping = self._state not in ("starting", "running")
                if stopping and failures >= 3:
                    logger.exception(
                        "job %r: could not store the outcome of run %s while stopping; it "
                        "stays in flight in the store until another scheduler takes it "
                        "over as abandoned",
                        run.job_id,
                        run.id,
                    )
                    return False
                self._store_failed(exc, f"storing the outcome of a run of job {run.job_id!r}")
                if stopping:
                    await anyio.sleep(0.1 * failures)  # real time: no one moves a clock now
                    continue
            else:
                # Its last fire time may have passed while the outcome was being stored:
                # acquired elsewhere with this run in flight, the job was kept, and
                # nobody else would remove it (see _remove_if_idle).
                if (
                    finishing is not None
                    and not last
                    and retry is None
                    and _finishing(finishing, self._now())
                ):
                    answer = await self._remove_if_idle(run.job_id)
                return answer
            await self._sleep_for_run(run, self._now() + timedelta(seconds=delay))
            delay = min(delay * 2, _STORE_ERROR_BACKOFF[1])

    # ------------------------------------------------- leases of in-flight runs

    async def _keep_runs(self, runs_done: anyio.Event) -> None:
        """Renew the leases of this scheduler's runs and its heartbeat; take over the runs
        of dead schedulers.

        Every third of ``lease_duration``: one ``extend_runs`` for the runs executing (or
        waiting for a retry) here, one ``heartbeat`` (the scheduler's record in the
        store's register), then one ``claim_expired_runs``. Renewal goes on while the
        scheduler stops and waits for its runs; claims only while it runs. When the
        scheduler pauses, resumes or begins to stop, it wakes this task early, for a
        heartbeat only (the new state), and the renewals keep their rhythm.
        """
        clock = self._clock
        interval = timedelta(seconds=self._lease_duration / 3)
        next_at = clock.now()
        backoff = 0.0
        try:
            while not runs_done.is_set():
                self._keep_deadline = next_at
                self._notify_idle()
                # A fresh event per wait: a fake clock wakes a waiter by setting its event.
                self._keep_wake = wake = anyio.Event()
                if runs_done.is_set():
                    return
                if self._state_unwritten():
                    # Paused, resumed or stopping while the last round ran: its wake-up
                    # went to that round's event; write the new state now.
                    wake.set()
                await clock.wait(next_at, wake)
                if runs_done.is_set():
                    return
                now = clock.now()
                early = wake.is_set() and now < next_at
                if early and not self._heartbeat_due(now, regular=False):
                    continue
                self._keeping = True
                what = "renewing the leases of running jobs"
                try:
                    if not early:
                        await self._renew_runs(now)
                    if self._heartbeat_due(now, regular=not early):
                        # Never raises: a register that cannot be written must not
                        # keep this scheduler from taking over dead schedulers' runs.
                        await self._beat(now)
                    if not early and self._may_claim(now):
                        what = "taking over the runs of dead schedulers"
                        await self._claim_runs(now)
                    # No _store_ok() here: these calls may only read (SQLite reads while
                    # another process holds the write lock), which does not end an outage;
                    # the loop's acquisition, a write, says when the store is back.
                    backoff = 0.0
                    if not early:
                        next_at = now + interval
                except Exception as exc:
                    self._store_failed(exc, what)
                    backoff = min(
                        max(backoff * 2, _STORE_ERROR_BACKOFF[0]), _STORE_ERROR_BACKOFF[1]
                    )
                    retry_at = clock.now() + min(interval, timedelta(seconds=backoff))
                    # An early heartbeat that failed keeps the renewals' time if sooner.
                    next_at = min(next_at, retry_at) if early else retry_at
                finally:
                    self._keeping = False
                    if self._store_down_since is not None:
                        # During an outage the loop retries on its own backoff; one that
                        # sleeps until a distant fire time would not: wake it.
                        self._wake()
                    self._notify_idle()
        finally:
            self._keep_deadline = None
            self._notify_idle()

    # ------------------------------------------------------------- heartbeats

    def _heartbeat_due(self, now: datetime, *, regular: bool) -> bool:
        """Whether this round of the lease keeper writes the scheduler's record.

        A regular round (every third of a lease) does, unless a heartbeat was written
        less than a sixth of a lease ago (the one at start, just before the first
        round; one for a change of state); any round does when the state changed.
        """
        if not self._registers:
            return False
        if self._beat_state != self._heartbeat_state():
            return True
        due = self._beat_due
        return regular and (due is None or now >= due)

    def _state_unwritten(self) -> bool:
        """Whether the register holds an older state of this scheduler than its own
        (and the last heartbeat did not fail: then the regular rounds retry it)."""
        return (
            self._registers
            and not self._beat_failing
            and self._beat_state != ""
            and self._beat_state != self._heartbeat_state()
        )

    async def _beat(self, now: datetime) -> None:
        """:meth:`_heartbeat`, logging a failure (once until it works again) instead of
        raising it: the register only informs; an outage of the store shows through the
        loop's own calls."""
        try:
            await self._heartbeat(now)
        except Exception as exc:
            if not self._beat_failing:
                self._beat_failing = True
                logger.warning(
                    "scheduler %s: could not write its heartbeat to the store's register "
                    "(%s: %s); its jobs run on, but get_schedulers() and the dashboard may "
                    "list it as silent until a heartbeat succeeds",
                    self.id,
                    type(exc).__name__,
                    exc,
                )
            return
        if self._beat_failing:
            self._beat_failing = False
            logger.info("scheduler %s: its heartbeat is written again", self.id)

    def _heartbeat_state(self) -> str:
        if self._state not in ("starting", "running"):
            return "stopping"
        return "paused" if self._paused else "running"

    async def _heartbeat(self, now: datetime) -> None:
        """Write this scheduler's record in the store's register; raises what it raises."""
        info = SchedulerInfo(
            id=self.id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at or now,
            heartbeat_at=now,
            expires_at=now + timedelta(seconds=self._lease_duration),
            state=self._heartbeat_state(),
            version=horae_version(),
        )
        await self.store.heartbeat(info)
        self._beat_state = info.state
        self._beat_due = now + timedelta(seconds=self._lease_duration / 6)

    async def _register(self) -> None:
        """Write the first heartbeat as the scheduler starts; a failure does not stop the
        start (the lease keeper writes it again at its first round)."""
        self._started_at = now = self._clock.now()
        self._beat_due = None
        self._beat_state = ""
        self._beat_failing = False
        # A store written for an older horae may keep no register: run without one.
        self._registers = callable(getattr(self.store, "heartbeat", None))
        if not self._registers:
            logger.info(
                "scheduler %s: the store %r keeps no register of schedulers (it has no "
                "heartbeat method); this scheduler is not listed by get_schedulers()",
                self.id,
                self.store,
            )
            return
        try:
            await self._heartbeat(now)
        except Exception as exc:
            self._beat_failing = True  # said here; _beat says when it works again
            logger.warning(
                "scheduler %s: could not write its heartbeat to the store (%s: %s); it "
                "starts anyway and writes it again with its next lease renewal",
                self.id,
                type(exc).__name__,
                exc,
            )

    async def _unregister(self) -> None:
        """Remove this scheduler's record as it stops (after its runs, before the store
        stops); best effort, and shielded: a stop by cancellation removes it too."""
        if not self._registers:
            return
        with anyio.CancelScope(shield=True):
            # Real time: a stop is not driven by a test's fake clock, and a store that
            # does not answer must not hold the stop for ever.
            with anyio.move_on_after(_UNREGISTER_TIMEOUT) as scope:
                try:
                    await self.store.remove_scheduler(self.id)
                except Exception as exc:
                    logger.warning(
                        "scheduler %s: could not remove its record from the store's register "
                        "(%s: %s); it is listed as silent until the store drops it",
                        self.id,
                        type(exc).__name__,
                        exc,
                    )
            if scope.cancelled_caught:
                logger.warning(
                    "scheduler %s: the store did not remove its record from the register "
                    "within %g s; it is listed as silent until the store drops it",
                    self.id,
                    _UNREGISTER_TIMEOUT,
                )

    def _may_claim(self, now: datetime) -> bool:
        if self._state != "running" or self.role != "scheduler" or self._paused:
            return False
        # Right after an outage every scheduler's leases may have run out, those of the
        # runs still going on included: let their owners renew them first (one lease).
        if self._store_down_since is not None:
            return False
        back = self._store_back_at
        return back is None or now - back >= timedelta(seconds=self._lease_duration)

    async def _renew_runs(self, now: datetime) -> None:
        live = self._live_runs
        if not live:
            return
        expires_at = now + timedelta(seconds=self._lease_duration)
        lost = await self.store.extend_runs(self.id, list(live), expires_at)
        for run_id in lost:
            if run_id in live:
                # Another scheduler took it over, or it is being finished right now (its
                # outcome stored while this renewal ran). Which one shows when the run
                # ends, or before it starts: _execute logs it there, once.
                self._lost_runs.add(run_id)

    async def _claim_runs(self, now: datetime) -> None:
        claimed = await self.store.claim_expired_runs(
            self.id, now, self._batch_size, self._lease_duration
        )
        if not claimed:
            return
        runs = self._runs
        if runs is None or self._runs_close.is_set():
            # The scheduler began to stop during the claim: give the runs back at once.
            await self.store.extend_runs(self.id, [run.id for run in claimed], now)
            return
        for run in claimed:
            if run.id in self._live_runs or run.id in self._pending_runs:
                # Its own run, whose lease ran out while the store was unreachable (a
                # retry whose finish_run reply was lost, say): claiming it renewed it.
                self._lost_runs.discard(run.id)
                continue
            # Owner: the runs task group, like every run.
            runs.start_soon(self._take_over, run, now)
            self._live_runs[run.id] = run
            self._in_flight += 1

    async def _take_over(self, run: Run, now: datetime) -> None:
        """End a claimed run of a dead scheduler as abandoned; retry it if its job says so."""
        job: Job | None = None
        retry: Run | None = None
        handed_on = False
        try:
            try:
                job = await self.store.get_job(run.job_id)
            except (JobLookupError, DeserializationError) as exc:
                logger.warning(
                    "job %r: its run for %s was abandoned and cannot be retried: %s",
                    run.job_id,
                    run.scheduled_time,
                    "the job no longer exists" if isinstance(exc, JobLookupError) else exc,
                )
                job = None
            except Exception as exc:
                # The store failed: leave the run claimed but no longer renewed; its
                # lease runs out and it is taken over again, by whoever is up then.
                self._store_failed(exc, f"reading job {run.job_id!r} to take over its run")
                return
            reason = (
                f"scheduler {run.scheduler_id} stopped renewing the run's lease (it died or "
                f"lost the store for longer than its lease); taken over by {self.id}"
            )
            given_up = ended(
                run,
                started_at=run.started_at,
                finished_at=now,
                outcome=RunOutcome.ABANDONED,
                error=reason,
            )
            if job is not None:
                retry = self._next_attempt(job, given_up, None)
            removed = False
            if retry is None:
                # As in _execute: the job goes with its last run's outcome, if that was it.
                removed = await self._record_outcome(given_up, wake=True, finishing=job)
                held = False
            else:
                held = await self._record_with_retry(given_up, retry)
            _reporting.abandoned(self._hub, given_up, reason)
            if removed:
                self._job_removed(run.job_id)
            if retry is not None and job is not None and held:
                start_at = self._now() + _retry_delay(job, run.attempt)
                logger.warning(
                    "job %r: attempt %d for %s (rerun of an abandoned run) at %s",
                    job.id,
                    retry.attempt,
                    run.scheduled_time,
                    start_at,
                )
                handed_on = True
                # _execute owns the retry from here, and its count in _in_flight.
                await self._execute(job, retry, start_at)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception:
            logger.exception("job %r: taking over run %s failed", run.job_id, run.id)
        finally:
            if not handed_on:
                self._forget_run(run.id)
                self._in_flight -= 1
                self._notify_idle()

    # ------------------------------------------------------ job-level controls

    def _request_cancel(self, job_id: str, before: datetime, now: datetime) -> None:
        """Cancel the runs of ``job_id`` for fire times before ``before``, here and in
        every scheduler sharing the store (``overlap="cancel_other"``)."""
        reason = f"cancelled by its job's fire time {before.isoformat()} (overlap='cancel_other')"
        self._cancel_runs(job_id, before, reason)
        event = JobCancelRequested(
            timestamp=now, origin=self.id, job_id=job_id, before=before, reason=reason
        )
        self._hub.publish(event)
        if self._task_group is not None:
            # Owner: the scheduler's task group; one store call.
            self._task_group.start_soon(self._send_cancel, event)

    async def _send_cancel(self, event: JobCancelRequested) -> None:
        try:
            await self.store.broadcast([event])
        except Exception as exc:
            logger.warning(
                "job %r: could not ask the other schedulers to cancel its runs (%s); a "
                "run of it going on elsewhere ends by itself before the next one starts",
                event.job_id,
                exc,
            )

    def _cancel_runs(self, job_id: str, before: datetime, reason: str) -> None:
        for run, scope in tuple(self._cancel_scopes.values()):
            if run.job_id == job_id and run.scheduled_time < before:
                self._cancel_reasons[run.id] = reason
                scope.cancel()

    def _on_store_event(self, event: Event) -> None:
        """An event from another scheduler sharing the store."""
        if isinstance(event, JobCancelRequested):
            self._cancel_runs(event.job_id, event.before, event.reason)
        self._hub.deliver(event)

    async def _pause_if_failing(self, job: Job, last: Run) -> None:
        """Pause ``job`` if its last ``pause_after_failures`` fire times all failed.

        Read from the job as stored, not as leased when ``last`` started: the user may
        have resumed it (or changed it) while the run went on.
        """
        try:
            try:
                stored = await self.store.get_job(job.id)
            except JobLookupError:
                return  # removed while the run went on
            limit = stored.pause_after_failures
            if stored.next_run_time is None or limit is None:
                return  # paused already (or finished), or no longer paused on failures
            attempts = stored.retry.attempts if stored.retry is not None else 1
            # The last few records usually decide (a success, or enough failures); the
            # skipped, missed or cancelled fire times between failures may push the
            # answer further back: then read the history as far as stores keep it.
            first = limit * attempts + stored.max_instances
            for window in (first, max(first, _PAUSE_HISTORY)):
                runs = await self.store.get_runs(job.id, limit=window)
                failed, decided = _failures_in_a_row(runs, limit, stored.resumed_at)
                if decided or len(runs) < window:
                    break
            if failed < limit:
                return
            note = (
                f"paused after {limit} failed fire time{'s' if limit > 1 else ''} in a row "
                f"(pause_after_failures={limit}); last: {last.outcome} at "
                f"{last.scheduled_time.isoformat()}"
            )
            await self.store.update_job(attrs.evolve(stored, next_run_time=None, pause_note=note))
        except Exception as exc:
            logger.warning("job %r: pausing it after repeated failures failed: %s", job.id, exc)
            return
        logger.error("job %r: %s", job.id, note)
        if self._hub.wanted & JobModified.code:
            self._hub.publish(
                JobModified(timestamp=self._now(), job_id=job.id, origin=self.id, actor="horae")
            )

    # ---------------------------------------------------------------- idleness

    def _notify_idle(self) -> None:
        if self._idle_watchers:
            event, self._idle_changed = self._idle_changed, anyio.Event()
            event.set()

    def _is_idle(self) -> bool:
        if self._outbox or self._sending:
            return False
        if self._state not in ("running", "starting"):
            return self._in_flight == 0
        if self._in_flight:
            # A run waiting out its jitter is idle until its time comes; once the clock
            # has reached it, it is busy even before its task has woken up.
            now = self._clock.now()
            if any(until <= now for until in self._clock_waits.values()):
                return False
            if self._in_flight > len(self._clock_waits):
                return False
        if self._keeping:
            return False
        if self._keep_deadline is not None and (
            self._keep_deadline <= self._clock.now() or self._keep_wake.is_set()
        ):
            return False
        if self.role == "client":
            return True
        if not self._loop_waiting or self._wakeup.is_set():
            return False
        return self._deadline is None or self._deadline > self._clock.now()

    async def _wait_idle(self) -> None:
        while not self._is_idle():
            self._idle_watchers += 1
            try:
                await self._idle_changed.wait()
            finally:
                self._idle_watchers -= 1
        # Let async listeners started by the last events run.
        await anyio.wait_all_tasks_blocked()


class _Resume:
    """Awaiting this goes on with a coroutine that was stepped by hand once.

    It forwards what the event loop sends or throws, exactly as ``await coro`` would
    have, had the coroutine not been started already (see ``AsyncScheduler._drain``).
    """

    __slots__ = ("_coro", "_first")

    def __init__(self, coro: Coroutine[Any, Any, None], first: Any) -> None:
        self._coro = coro
        self._first = first

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self._coro
        value = self._first
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return
