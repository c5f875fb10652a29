"""What happens to the due fire times of a leased job: the misfire rules in one place.

This is the scheduler's decision, never a store's: a store only hands out leases and
records what the scheduler decided.
"""

from __future__ import annotations

from datetime import datetime

from horae.jobs import Job, Run, RunOutcome
from horae.stores.base import Lease, Release


def plan_release(lease: Lease, now: datetime, scheduler_id: str) -> Release:
    """Decide, for each fire time of ``lease.job`` due at ``now``, whether it runs.

    - Every fire time up to ``now`` is collected from the trigger.
    - With ``coalesce``, a backlog of several collapses into one run for the latest,
      which counts the others in ``Run.coalesced``.
    - A fire time more than ``misfire_grace_time`` before ``now`` is ``missed``.
    - Beyond ``max_instances`` runs in flight (counted by the store across every
      scheduler), a fire time is ``skipped``.

    Raises:
        Exception: whatever the trigger's ``next()`` raised.
    """
    job = lease.job
    assert job is not None, "leases of unreadable jobs are not planned"
    trigger = job.trigger
    due: list[datetime] = []
    t = job.next_run_time
    while t is not None and t <= now:
        due.append(t)
        t = trigger.next(t)
    if job.coalesce and len(due) > 1:
        fire_times = [(due[-1], len(due) - 1)]
    else:
        fire_times = [(d, 0) for d in due]
    grace = job.misfire_grace_time
    available = job.max_instances - lease.running
    started: list[Run] = []
    finished: list[Run] = []
    for scheduled, coalesced in fire_times:
        if grace is not None and now - scheduled > grace:
            outcome = RunOutcome.MISSED
        elif available <= 0:
            outcome = RunOutcome.SKIPPED
        else:
            available -= 1
            started.append(
                Run(
                    job_id=job.id,
                    scheduled_time=scheduled,
                    scheduler_id=scheduler_id,
                    coalesced=coalesced,
                )
            )
            continue
        finished.append(
            Run(
                job_id=job.id,
                scheduled_time=scheduled,
                finished_at=now,
                outcome=outcome,
                scheduler_id=scheduler_id,
                coalesced=coalesced,
            )
        )
    remove = t is None
    if remove and (started or lease.running) and _may_retry_abandoned(job):
        # Its trigger has ended, but a run of it may still be abandoned and then needs
        # the job to be retried: keep it, without a next run time, until its last run
        # ends (AsyncScheduler removes it then).
        remove = False
    return Release(lease=lease, next_run_time=t, started=started, finished=finished, remove=remove)


def _may_retry_abandoned(job: Job) -> bool:
    policy = job.retry
    return policy is not None and policy.abandoned and policy.attempts > 1


def is_finishing(job: Job, now: datetime) -> bool:
    """Whether ``job``'s trigger has ended, so that it is kept only for runs that may
    still be retried (and removed after the last one)."""
    return _may_retry_abandoned(job) and job.trigger.next(now) is None
