"""The store protocol: what every job store (memory, SQLite, PostgreSQL, Redis) provides.

A store keeps jobs and their run history, and hands each due job to exactly one
scheduler at a time through a *lease*: ``acquire_jobs`` marks up to ``limit`` due jobs as
held by one scheduler until ``expires_at``; the scheduler decides what to do with the due
fire times (the misfire, coalescing and max_instances rules live in the scheduler, not in
the stores) and gives the jobs back with ``release_jobs``, in one call per batch. A lease
that is not released in time expires and another scheduler may acquire the job.

Runs that are handed to an executor stay *in flight* in the store until
``finish_run``; the number of in-flight runs of a job is what ``max_instances`` counts,
so it holds across every scheduler sharing the store. An in-flight run is leased too: its
scheduler renews it (``extend_runs``) while the run goes on. A run whose lease expired
belongs to a scheduler that died (or lost the store for longer than a lease): any
scheduler may take it over with ``claim_expired_runs``, record it ``abandoned`` and, if the
job's retry policy says so, start its next attempt, with ``finish_run(run, retry=...)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

import attrs

from horae.events import Event
from horae.jobs import Job, Run

__all__ = ["Lease", "Release", "SchedulerInfo", "Store", "StoreContext"]

#: How long a store keeps the record of a scheduler that stopped sending heartbeats
#: without removing it (it died): seconds after its ``expires_at``. Until then it is
#: listed by :meth:`Store.get_schedulers`, as silent.
SCHEDULER_RECORD_KEEP = 24 * 3600.0


@attrs.frozen(kw_only=True)
class StoreContext:
    """What a scheduler hands its store when it starts.

    Attributes:
        scheduler_id: the id of the scheduler using the store.
        wakeup: call when jobs changed in a way this scheduler did not see (another
            process added or changed one): the scheduler looks again for due jobs.
        publish: call with events that happened in other schedulers sharing the store
            (what they :meth:`Store.broadcast`): they go to this scheduler's listeners
            and subscribers, and are never broadcast again. Call it in the event loop
            of the scheduler, never from another thread.
    """

    scheduler_id: str
    wakeup: Callable[[], None]
    publish: Callable[[Event], None]


@attrs.frozen(kw_only=True)
class Lease:
    """A due job held by one scheduler until ``expires_at``.

    Attributes:
        job_id: the leased job's id.
        job: the job as stored when it was acquired; ``None`` when the stored job could
            not be read back (``error`` says why). The scheduler reports such a job and
            backs it off; the store never deletes it for that.
        error: why ``job`` is ``None``.
        scheduler_id: who holds it.
        expires_at: when another scheduler may take it over.
        token: a number that grows with every lease of the job (a fencing token): a
            release with an older token is refused.
        running: how many runs of the job were in flight (anywhere) when acquired.
        run_count: how many runs of the job have been started so far, by every scheduler
            (the sum of the ``started`` of its releases; retries do not count, nor runs
            of ``run_job``). Kept when the job is replaced or updated (``max_runs``).
    """

    job_id: str
    job: Job | None
    scheduler_id: str
    expires_at: datetime
    token: int
    running: int = 0
    run_count: int = 0
    error: Exception | None = None


@attrs.frozen(kw_only=True)
class Release:
    """What a scheduler did with a leased job.

    Attributes:
        lease: the lease being given back.
        next_run_time: the job's next fire time (``None``: no more fire times).
        started: runs handed to an executor now; in flight until ``finish_run``, held by
            the releasing scheduler until ``lease.expires_at`` (see ``extend_runs``).
        finished: runs that ended without executing (missed, skipped).
        remove: the trigger is exhausted: remove the job.
        hold_while_running: ``0``, or a number of runs: if, once this release's
            ``started`` runs are in flight, the job has that many runs in flight or more,
            the job is *held*: it keeps ``next_run_time`` (the fire time that waits for a
            free slot) but is not handed out (nor counted by ``next_run_time()``) until
            one of its runs leaves flight without a retry (:meth:`Store.finish_run`, which
            then wakes the schedulers sharing the store), or the job is updated or
            replaced. The check and the hold are one atomic step with respect to
            ``finish_run``, so that a job is never held with no run left to free it.
    """

    lease: Lease
    next_run_time: datetime | None
    started: Sequence[Run] = ()
    finished: Sequence[Run] = ()
    remove: bool = False
    hold_while_running: int = 0


@attrs.frozen(kw_only=True)
class SchedulerInfo:
    """A scheduler as it last reported itself to its store (its heartbeat).

    Every running scheduler (role ``"scheduler"``) writes its record when it starts and
    renews it every third of its ``lease_duration``; it removes it when it stops. A
    record whose ``expires_at`` has passed belongs to a scheduler that died or lost the
    store: it is kept for :data:`SCHEDULER_RECORD_KEEP` seconds more, then dropped.

    Attributes:
        id: the scheduler's id.
        host: the host name it runs on.
        pid: its process id.
        started_at: when it started.
        heartbeat_at: when it last wrote this record.
        expires_at: when the record goes stale without a new heartbeat (``heartbeat_at``
            plus the scheduler's ``lease_duration``).
        state: ``"running"``, ``"paused"`` (not acquiring jobs) or ``"stopping"``.
        version: the horae version it runs (``""`` when unknown).
        job_leases: due jobs it holds leased now (filled in by
            :meth:`Store.get_schedulers`; ignored by :meth:`Store.heartbeat`).
        run_leases: runs in flight it holds now (as ``job_leases``).
    """

    id: str
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    expires_at: datetime
    state: str = "running"
    version: str = ""
    job_leases: int = 0
    run_leases: int = 0

    def alive(self, now: datetime) -> bool:
        """Whether its last heartbeat is still current at ``now``."""
        return self.expires_at > now


@runtime_checkable
class Store(Protocol):
    """A job store. Each method is one round trip's worth of work."""

    async def start(self, context: StoreContext) -> None:
        """Open connections, create tables; called when the scheduler starts."""
        ...

    async def stop(self) -> None:
        """Close what :meth:`start` opened."""
        ...

    async def add_jobs(self, jobs: Sequence[Job], *, replace: bool) -> None:
        """Add jobs; raises ``ConflictingIdError`` for an existing id unless ``replace``."""
        ...

    async def get_job(self, job_id: str) -> Job:
        """The job with that id; raises ``JobLookupError``."""
        ...

    async def get_jobs(self) -> list[Job]:
        """Every job, by next run time (paused jobs last)."""
        ...

    async def update_job(self, job: Job) -> None:
        """Replace the stored job of the same id; raises ``JobLookupError``."""
        ...

    async def remove_job(self, job_id: str) -> None:
        """Remove a job; raises ``JobLookupError``."""
        ...

    async def remove_all_jobs(self) -> None:
        """Remove every job."""
        ...

    async def next_run_time(self) -> datetime | None:
        """The earliest next run time of any job not leased nor held, or ``None``."""
        ...

    async def acquire_jobs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> list[Lease]:
        """Lease up to ``limit`` jobs due at ``now`` (earliest first) for ``lease_duration`` s."""
        ...

    async def release_jobs(self, scheduler_id: str, releases: Sequence[Release]) -> set[str]:
        """Give leased jobs back with their next run times, recording their runs.

        A release whose lease is no longer held (it expired and another scheduler took
        the job: its token is older than the job's), or whose job was removed meanwhile
        (by the user, or by the scheduler that took it over), changes nothing; its job
        id is in the returned set, and the scheduler then starts none of its runs.

        While a job was leased, :meth:`update_job` may have changed it. If its stored
        next run time still equals the leased job's, the release's next run time (and
        ``remove``) applies, whatever else changed; otherwise the user rescheduled or
        paused it, and the stored next run time stays (the job is not removed).
        """
        ...

    async def finish_run(
        self,
        run: Run,
        *,
        retry: Run | None = None,
        expires_at: datetime | None = None,
        remove_finished_job: bool = False,
    ) -> bool:
        """Record the outcome of a run; it leaves the in-flight runs (max_instances).

        With ``retry`` (the job's next attempt for the same fire time), and only if
        ``run`` was in flight, ``retry`` enters the in-flight runs in the same step, held
        by ``retry.scheduler_id`` until ``expires_at``: the job's count of runs in flight
        never drops in between, so max_instances holds through retries. A run that is
        no longer in flight (another scheduler took it over and finished it as abandoned
        meanwhile, or a ``run_job`` run) is recorded, and its ``retry`` ignored: whoever
        finished it first decided about retrying. A claimed run stays in flight until
        someone finishes it, whoever holds it. When a run id is recorded already, the
        first record stays. ``expires_at`` is required with ``retry``.

        A run that leaves flight without a retry frees its job if the job was held
        (:attr:`Release.hold_while_running`): the job is handed out again from its
        next run time, and the schedulers sharing the store are woken.

        With ``remove_finished_job`` (and no ``retry``), once ``run`` has left flight,
        the job is removed in the same step if it still exists, has no next run time,
        is neither leased nor held and has no other run in flight: as
        :meth:`remove_job` removes it (its run history stays), with the same
        notifications. Otherwise nothing more happens. The scheduler asks for this
        after the last run of a job kept past its trigger's end (only it can evaluate
        the trigger): a separate ``remove_job`` would leave the job behind, looking
        paused, should the scheduler die in between.

        Returns:
            whether the job was removed (always ``False`` without
            ``remove_finished_job``).
        """
        ...

    async def remove_job_if_idle(self, job_id: str) -> bool:
        """Remove the job in one step if nothing of it is left to happen.

        That is: it exists, has no next run time, is neither leased nor held, and has no
        run in flight. The condition and the removal are those of
        :meth:`finish_run`'s ``remove_finished_job`` (as :meth:`remove_job` removes it,
        its run history staying, with the same notifications); the check and the removal
        are one atomic step with respect to ``finish_run`` and ``release_jobs``.

        The scheduler calls it after a release that kept a job past its trigger's end
        because a run of it was in flight when acquired: that run may have ended
        meanwhile, its ``finish_run`` declining the removal because the job was leased
        then.

        Returns:
            whether the job was removed.
        """
        ...

    async def extend_runs(
        self, scheduler_id: str, run_ids: Sequence[UUID], expires_at: datetime
    ) -> set[UUID]:
        """Renew the leases of in-flight runs that ``scheduler_id`` still executes.

        Returns the ids among ``run_ids`` that are no longer in flight held by
        ``scheduler_id`` (another scheduler claimed them, or they finished).
        """
        ...

    async def claim_expired_runs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> list[Run]:
        """Take over up to ``limit`` in-flight runs whose lease expired at or before ``now``.

        Their scheduler stopped renewing them: it died, or lost the store for longer
        than a lease. They stay in flight (still counting for max_instances), now held by
        ``scheduler_id`` for ``lease_duration`` seconds, and are returned as stored (the
        ``scheduler_id`` of each is still the one that ran it); the caller ends each with
        :meth:`finish_run` (``abandoned``, with a retry or not). Oldest leases first.
        """
        ...

    async def get_runs(self, job_id: str, limit: int = 100) -> list[Run]:
        """The job's recent runs, in flight first, then newest first."""
        ...

    async def get_job_ids(self) -> list[str]:
        """The ids of every stored job, sorted; one round trip.

        Jobs that cannot be read back are included (:meth:`get_jobs` leaves them out and
        logs them; :meth:`get_job` raises ``DeserializationError`` saying why), so that
        tools can show them.
        """
        ...

    async def get_latest_runs(self, job_ids: Sequence[str]) -> dict[str, Run]:
        """Each job's latest run, in one round trip whatever the number of ids.

        For each id, the run that ``get_runs(job_id, limit=1)`` returns: an in-flight
        run if there is one (the latest scheduled), else the newest finished one. Ids
        with no run (or of no job) are left out.
        """
        ...

    async def get_runs_in_flight(self, limit: int = 1000) -> list[Run]:
        """The runs in flight of every job (removed jobs' too), as stored; one round trip.

        At most ``limit`` of them, by scheduled time, then by run id (``str(run.id)``).
        """
        ...

    async def broadcast(self, events: Sequence[Event]) -> None:
        """Send these events to the other schedulers sharing the store.

        They are delivered there through their :attr:`StoreContext.publish`, never back
        to the sender. Delivery is best effort: a scheduler that is not listening at
        that moment (not started, connection lost) does not see them. The scheduler
        calls this with batches of job and run events (``horae._event_codec`` turns
        them into JSON for stores that need text).
        """
        ...

    async def heartbeat(self, info: SchedulerInfo) -> None:
        """Write (or replace) the record of scheduler ``info.id``; one round trip.

        ``job_leases`` and ``run_leases`` are not stored (they are counted when read).
        Records that expired more than :data:`SCHEDULER_RECORD_KEEP` seconds before
        ``info.heartbeat_at`` are deleted in the same step.
        """
        ...

    async def remove_scheduler(self, scheduler_id: str) -> None:
        """Delete the record of a scheduler that stops; nothing happens if there is none."""
        ...

    async def get_schedulers(self, now: datetime) -> list[SchedulerInfo]:
        """Every scheduler record (stale ones too, until dropped), by id.

        ``job_leases`` and ``run_leases`` count the job leases and in-flight runs that
        each scheduler holds at ``now`` (leases expiring after ``now``).
        """
        ...
