"""The in-memory store: the default, for jobs that need not survive the process."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import UUID

import attrs

from horae.errors import ConflictingIdError, JobLookupError
from horae.events import Event, JobError
from horae.jobs import Job, Run
from horae.stores import _options
from horae.stores.base import SCHEDULER_RECORD_KEEP, Lease, Release, SchedulerInfo, StoreContext

__all__ = ["MemoryStore"]

#: How many removed jobs keep their run history.
_REMOVED_HISTORIES = 1000


class MemoryStore:
    """Keeps jobs in a heap ordered by next run time: O(log n) per change.

    Acquiring k due jobs costs O(k log n). Nothing survives the process; use
    ``SQLiteStore`` (one machine) or ``PostgresStore``/``RedisStore`` (many) for that.

    Args:
        run_retention: how many finished runs to keep per job.
    """

    def __init__(self, *, run_retention: int = 100) -> None:
        self._run_retention = _options.run_retention(run_retention)
        self._jobs: dict[str, Job] = {}
        # Heap entries are (timestamp, sequence, job id); an entry is live only while its
        # sequence is the job's current one (changes push a new entry, lazily dropping the
        # old), which keeps every change O(log n).
        self._heap: list[tuple[float, int, str]] = []
        self._live_seq: dict[str, int] = {}
        self._seq = 0
        self._leases: dict[str, Lease] = {}
        self._token = 0
        self._running: dict[str, int] = {}
        # Runs started so far per job (Lease.run_count), and the jobs held until one of
        # their runs ends (Release.hold_while_running).
        self._run_counts: dict[str, int] = {}
        self._held: set[str] = set()
        self._in_flight: dict[UUID, Run] = {}
        # Who holds each in-flight run, and until when (see extend_runs).
        self._run_leases: dict[UUID, tuple[str, datetime]] = {}
        self._runs: dict[str, deque[Run]] = {}
        self._removed: dict[str, None] = {}  # insertion-ordered
        # The schedulers started on this store, by id: several schedulers of one
        # process may share a MemoryStore, and see each other's events (broadcast).
        self._contexts: dict[str, StoreContext] = {}
        self._schedulers: dict[str, SchedulerInfo] = {}

    def __repr__(self) -> str:
        return f"MemoryStore(jobs={len(self._jobs)})"

    async def start(self, context: StoreContext) -> None:
        """Nothing to open; the scheduler joins those that see each other's events."""
        self._contexts[context.scheduler_id] = context

    async def stop(self) -> None:
        """Nothing to close; the jobs stay for a scheduler started on this store again.

        Leases are left alone: other schedulers may share this instance, and a lease
        this one still held expires by itself.
        """

    def _schedule(self, job: Job) -> None:
        self._seq += 1
        if job.next_run_time is None:
            self._live_seq.pop(job.id, None)
            return
        self._live_seq[job.id] = self._seq
        heapq.heappush(self._heap, (job.next_run_time.timestamp(), self._seq, job.id))

    async def add_jobs(self, jobs: Sequence[Job], *, replace: bool) -> None:
        """Add jobs; an existing id is replaced only with ``replace``."""
        if not replace:
            seen: set[str] = set()
            for job in jobs:
                if job.id in self._jobs or job.id in seen:
                    raise ConflictingIdError(job.id)
                seen.add(job.id)
        for job in jobs:
            self._jobs[job.id] = job
            self._held.discard(job.id)
            if job.id not in self._leases:
                self._schedule(job)
        self._wake_others()

    async def get_job(self, job_id: str) -> Job:
        """The job with that id."""
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobLookupError(job_id) from None

    async def get_jobs(self) -> list[Job]:
        """Every job, by next run time, paused jobs last."""
        return sorted(
            self._jobs.values(),
            key=lambda j: (
                j.next_run_time is None,
                j.next_run_time.timestamp() if j.next_run_time else 0,
            ),
        )

    async def update_job(self, job: Job) -> None:
        """Replace the stored job of the same id."""
        if job.id not in self._jobs:
            raise JobLookupError(job.id)
        self._jobs[job.id] = job
        self._held.discard(job.id)
        if job.id not in self._leases:
            self._schedule(job)
        self._wake_others()

    def _wake_others(self) -> None:
        # Other schedulers sharing this instance may sleep past a job added or changed
        # by one of them (the caller is woken too, harmlessly: it cannot be told apart).
        if len(self._contexts) > 1:
            for context in tuple(self._contexts.values()):
                context.wakeup()

    async def remove_job(self, job_id: str) -> None:
        """Remove a job (its run history stays readable)."""
        if job_id not in self._jobs:
            raise JobLookupError(job_id)
        self._remove(job_id)

    def _remove(self, job_id: str) -> None:
        del self._jobs[job_id]
        self._live_seq.pop(job_id, None)
        self._held.discard(job_id)
        self._run_counts.pop(job_id, None)
        self._leases.pop(job_id, None)  # its release is refused
        self._forget_later(job_id)

    async def remove_all_jobs(self) -> None:
        """Remove every job."""
        for job_id in self._jobs:
            self._forget_later(job_id)
        self._jobs.clear()
        self._live_seq.clear()
        self._heap.clear()
        self._held.clear()
        self._run_counts.clear()
        self._leases.clear()

    def _pop_stale(self) -> None:
        heap = self._heap
        live = self._live_seq
        while heap and live.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)

    async def next_run_time(self) -> datetime | None:
        """The earliest next run time of a job that is not leased (a lease counts at its
        expiry, when another scheduler may take the job over)."""
        self._pop_stale()
        earliest = self._jobs[self._heap[0][2]].next_run_time if self._heap else None
        if self._leases:
            expiry = min(lease.expires_at for lease in self._leases.values())
            if earliest is None or expiry < earliest:
                earliest = expiry
        return earliest

    def _expire_leases(self, now: datetime) -> None:
        for job_id, lease in list(self._leases.items()):
            if lease.expires_at <= now:
                del self._leases[job_id]
                job = self._jobs.get(job_id)
                if job is not None:
                    self._schedule(job)

    async def acquire_jobs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> list[Lease]:
        """Lease up to ``limit`` due jobs, earliest first."""
        if self._leases:
            self._expire_leases(now)
        now_ts = now.timestamp()
        expires = now + timedelta(seconds=lease_duration)
        heap = self._heap
        live = self._live_seq
        leases: list[Lease] = []
        while heap and len(leases) < limit and heap[0][0] <= now_ts:
            _, seq, job_id = heapq.heappop(heap)
            if live.get(job_id) != seq:
                continue
            del live[job_id]
            self._token += 1
            lease = Lease(
                job_id=job_id,
                job=self._jobs[job_id],
                scheduler_id=scheduler_id,
                expires_at=expires,
                token=self._token,
                running=self._running.get(job_id, 0),
                run_count=self._run_counts.get(job_id, 0),
            )
            self._leases[job_id] = lease
            leases.append(lease)
        return leases

    async def release_jobs(self, scheduler_id: str, releases: Sequence[Release]) -> set[str]:
        """Give leased jobs back with their next run times."""
        rejected: set[str] = set()
        for release in releases:
            lease = release.lease
            job_id = lease.job_id
            held = self._leases.get(job_id)
            if held is None or held.token != lease.token:
                # The lease expired and someone else took the job: this scheduler's view
                # is stale and must not overwrite it.
                rejected.add(job_id)
                continue
            del self._leases[job_id]
            if release.started:
                held_until = (scheduler_id, lease.expires_at)
                in_flight = self._in_flight
                run_leases = self._run_leases
                for run in release.started:
                    run_id = run.id
                    in_flight[run_id] = run
                    run_leases[run_id] = held_until
            if release.started:
                self._running[job_id] = self._running.get(job_id, 0) + len(release.started)
            for run in release.finished:
                self._record(run)
            job = self._jobs[job_id]  # a removed job's lease went with it
            if (
                release.remove
                and lease.job is not None
                and job.next_run_time == lease.job.next_run_time
            ):
                del self._jobs[job_id]
                self._run_counts.pop(job_id, None)
                self._forget_later(job_id)
                continue
            if release.started:
                self._run_counts[job_id] = self._run_counts.get(job_id, 0) + len(release.started)
            held_job = lease.job
            if held_job is None or job.next_run_time == held_job.next_run_time:
                # Its next run time is the one acquired: unchanged, or changed in ways
                # that do not touch its schedule (a new name, new arguments).
                job = _with_next_run_time(job, release.next_run_time)
                self._jobs[job_id] = job
            hold = release.hold_while_running
            if hold and job.next_run_time is not None and self._running.get(job_id, 0) >= hold:
                self._held.add(job_id)
                self._live_seq.pop(job_id, None)
                continue
            self._schedule(job)
        return rejected

    def _forget_later(self, job_id: str) -> None:
        # The run history of a removed job stays readable, but only that of the last
        # _REMOVED_HISTORIES removed jobs: one-off jobs (add_job(f)) would otherwise
        # grow the store without bound.
        self._removed.pop(job_id, None)
        self._removed[job_id] = None
        if len(self._removed) > _REMOVED_HISTORIES:
            oldest = next(iter(self._removed))
            del self._removed[oldest]
            if oldest not in self._jobs:
                self._runs.pop(oldest, None)

    def _record(self, run: Run) -> None:
        if self._run_retention == 0:
            return
        history = self._runs.get(run.job_id)
        if history is None:
            history = self._runs[run.job_id] = deque(maxlen=self._run_retention)
        history.appendleft(run)

    async def finish_run(
        self,
        run: Run,
        *,
        retry: Run | None = None,
        expires_at: datetime | None = None,
        remove_finished_job: bool = False,
    ) -> bool:
        """Record a finished run; it no longer counts for max_instances.

        ``retry`` takes its place in flight; with ``remove_finished_job``, a job left
        with nothing to do is removed (see :meth:`Store.finish_run`).
        """
        if retry is not None and expires_at is None:
            raise ValueError("finish_run: a retry needs expires_at")
        run_id = run.id
        if self._in_flight.pop(run_id, None) is not None:
            del self._run_leases[run_id]
            if retry is not None:
                self._in_flight[retry.id] = retry
                assert expires_at is not None
                self._run_leases[retry.id] = (retry.scheduler_id, expires_at)
            else:
                count = self._running.get(run.job_id, 0) - 1
                if count > 0:
                    self._running[run.job_id] = count
                else:
                    self._running.pop(run.job_id, None)
                if run.job_id in self._held:
                    self._free(run.job_id)
            self._record(run)
        elif not any(r.id == run_id for r in self._runs.get(run.job_id, ())):
            self._record(run)  # else the first record stays
        if remove_finished_job and retry is None:
            return self._remove_if_idle(run.job_id)
        return False

    async def remove_job_if_idle(self, job_id: str) -> bool:
        """Remove the job if nothing of it is left to happen (see
        :meth:`Store.remove_job_if_idle`); return whether it was."""
        return self._remove_if_idle(job_id)

    def _remove_if_idle(self, job_id: str) -> bool:
        # No next run time (so not held either), not leased, no run in flight: nothing
        # of the job is left to happen.
        job = self._jobs.get(job_id)
        if (
            job is None
            or job.next_run_time is not None
            or job_id in self._leases
            or job_id in self._held
            or self._running.get(job_id, 0) > 0
        ):
            return False
        self._remove(job_id)
        return True

    def _free(self, job_id: str) -> None:
        # A held job's run ended: hand the job out again, and tell every scheduler.
        self._held.discard(job_id)
        job = self._jobs.get(job_id)
        if job is not None and job_id not in self._leases:
            self._schedule(job)
        for context in tuple(self._contexts.values()):
            context.wakeup()

    async def extend_runs(
        self, scheduler_id: str, run_ids: Sequence[UUID], expires_at: datetime
    ) -> set[UUID]:
        """Renew this scheduler's leases of its in-flight runs; return those it lost."""
        lost: set[UUID] = set()
        leases = self._run_leases
        for run_id in run_ids:
            held = leases.get(run_id)
            if held is None or held[0] != scheduler_id:
                lost.add(run_id)
            else:
                leases[run_id] = (scheduler_id, expires_at)
        return lost

    async def claim_expired_runs(
        self, scheduler_id: str, now: datetime, limit: int, lease_duration: float
    ) -> list[Run]:
        """Take over in-flight runs whose lease expired, oldest lease first."""
        if not self._run_leases:
            return []
        expired = sorted(
            (until, run_id) for run_id, (_, until) in self._run_leases.items() if until <= now
        )[:limit]
        held_until = (scheduler_id, now + timedelta(seconds=lease_duration))
        claimed = []
        for _, run_id in expired:
            self._run_leases[run_id] = held_until
            claimed.append(self._in_flight[run_id])
        return claimed

    async def broadcast(self, events: Sequence[Event]) -> None:
        """Hand the events to the other schedulers started on this store instance.

        The event objects themselves travel (nothing is serialized), except that a
        ``JobError`` arrives without its exception object, as from every other store.
        A stopped scheduler ignores them (its entry stays until a scheduler of the same
        id starts again: ``stop()`` cannot tell which of several schedulers stops).
        """
        contexts = self._contexts
        if len(contexts) < 2 and (not events or events[0].origin in contexts):
            return  # nobody else to tell
        for event in events:
            if isinstance(event, JobError) and event.exception is not None:
                event = attrs.evolve(event, exception=None)
            for scheduler_id, context in tuple(contexts.items()):
                if scheduler_id != event.origin:
                    context.publish(event)

    async def heartbeat(self, info: SchedulerInfo) -> None:
        """Keep the scheduler's record; drop those stale for longer than the keep time."""
        cutoff = info.heartbeat_at - timedelta(seconds=SCHEDULER_RECORD_KEEP)
        records = self._schedulers
        for scheduler_id, record in list(records.items()):
            if record.expires_at < cutoff:
                del records[scheduler_id]
        records[info.id] = attrs.evolve(info, job_leases=0, run_leases=0)

    async def remove_scheduler(self, scheduler_id: str) -> None:
        """Forget the scheduler's record."""
        self._schedulers.pop(scheduler_id, None)

    async def get_schedulers(self, now: datetime) -> list[SchedulerInfo]:
        """The records by id, with the leases each scheduler holds at ``now``."""
        jobs: dict[str, int] = {}
        for lease in self._leases.values():
            if lease.expires_at > now:
                jobs[lease.scheduler_id] = jobs.get(lease.scheduler_id, 0) + 1
        runs: dict[str, int] = {}
        for holder, until in self._run_leases.values():
            if until > now:
                runs[holder] = runs.get(holder, 0) + 1
        return [
            attrs.evolve(info, job_leases=jobs.get(sid, 0), run_leases=runs.get(sid, 0))
            for sid, info in sorted(self._schedulers.items())
        ]

    async def get_job_ids(self) -> list[str]:
        """Every job id, sorted."""
        return sorted(self._jobs)

    async def get_latest_runs(self, job_ids: Sequence[str]) -> dict[str, Run]:
        """Each job's in-flight run scheduled last, else its newest finished run."""
        wanted = set(job_ids)
        latest: dict[str, Run] = {}
        for run in self._in_flight.values():
            if run.job_id in wanted:
                known = latest.get(run.job_id)
                if known is None or run.scheduled_time > known.scheduled_time:
                    latest[run.job_id] = run
        for job_id in wanted:
            if job_id not in latest:
                finished = self._runs.get(job_id)
                if finished:
                    latest[job_id] = finished[0]
        return latest

    async def get_runs_in_flight(self, limit: int = 1000) -> list[Run]:
        """In-flight runs by scheduled time, then id."""
        if limit <= 0:
            return []
        runs = sorted(self._in_flight.values(), key=lambda r: (r.scheduled_time, str(r.id)))
        return runs[:limit]

    async def get_runs(self, job_id: str, limit: int = 100) -> list[Run]:
        """In-flight runs first, then finished ones, newest first."""
        in_flight = [r for r in self._in_flight.values() if r.job_id == job_id]
        in_flight.sort(key=lambda r: r.scheduled_time, reverse=True)
        finished = list(self._runs.get(job_id, ()))
        return (in_flight + finished)[:limit]


def _with_next_run_time(job: Job, next_run_time: datetime | None) -> Job:
    # attrs.evolve re-runs every converter and validator; this is the hot path of every
    # fire time, and only one already-validated field changes.
    new = object.__new__(Job)
    for name in Job.__slots__:  # type: ignore[attr-defined]
        if name != "__weakref__":
            object.__setattr__(new, name, getattr(job, name))
    object.__setattr__(new, "next_run_time", next_run_time)
    return new
