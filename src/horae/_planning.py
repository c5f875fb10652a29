"""What happens to the due fire times of a leased job: the misfire and overlap rules.

This is the scheduler's decision, never a store's: a store only hands out leases and
records what the scheduler decided.
"""

from __future__ import annotations

from datetime import datetime

from horae.jobs import RERUN_ATTEMPTS, Job, Run, RunOutcome
from horae.stores.base import Lease, Release


def plan_release(lease: Lease, now: datetime, scheduler_id: str) -> Release:
    """Decide, for each fire time of ``lease.job`` due at ``now``, whether it runs.

    - Every fire time up to ``now`` is collected from the trigger.
    - With ``coalesce`` (never with ``overlap="buffer_all"``), a backlog of several
      collapses into one run for the latest, which counts the others in
      ``Run.coalesced``.
    - A fire time more than ``misfire_grace_time`` before ``now`` is ``missed``.
    - Beyond ``max_instances`` runs in flight (counted by the store across every
      scheduler), a fire time is ``skipped`` (``overlap="skip"``), or waits: the job
      keeps it as its next run time and is held until a run of it ends
      (``buffer_one``, ``buffer_all``, ``cancel_other``; :attr:`Release.hold_while_running`).
      ``allow_all`` has no limit. The job is held only while a fire time waits: one
      whose runs end before its next fire time costs no hold, nor the wake-ups of
      every scheduler when a run frees it.
    - Once ``max_runs`` runs have started, the job is removed (at once: a run of it
      abandoned after that is recorded, but not rerun).

    Raises:
        Exception: whatever the trigger's ``next()`` raised.
    """
    job = lease.job
    assert job is not None, "leases of unreadable jobs are not planned"
    trigger = job.trigger
    overlap = job.overlap
    slots = job.max_instances - lease.running
    # buffer_all starts one fire time per free slot and leaves the rest waiting: it needs
    # only those (and one more), not the whole backlog, which would cost a walk of the
    # backlog at every run of it.
    wanted = max(slots, 0) + 1 if overlap == "buffer_all" else None
    due: list[datetime] = []
    t = job.next_run_time
    while t is not None and t <= now:
        due.append(t)
        t = trigger.next(t)
        if wanted is not None and len(due) >= wanted:
            break
    available = slots
    if overlap == "allow_all":
        available = len(due)
    elif overlap != "skip" and available <= 0 and due:
        # Busy: the fire times wait (from the first of them) until a run ends; what
        # becomes of them is decided then, by this same function. The store holds the
        # job only if its slots are still full; if a run ended since the acquisition,
        # the job is simply due again at once.
        return Release(lease=lease, next_run_time=due[0], hold_while_running=job.max_instances)
    if len(due) > 1 and job.coalesce and overlap != "buffer_all":
        fire_times = [(due[-1], len(due) - 1)]
    else:
        fire_times = [(d, 0) for d in due]
    runs_left = None if job.max_runs is None else job.max_runs - lease.run_count
    grace = job.misfire_grace_time
    started: list[Run] = []
    finished: list[Run] = []
    next_run_time = t
    for scheduled, coalesced in fire_times:
        if runs_left is not None and len(started) >= runs_left:
            break  # the job has had all its runs; these fire times are not its any more
        if grace is not None and now - scheduled > grace:
            outcome = RunOutcome.MISSED
        elif available <= 0:
            if overlap == "buffer_all":
                # Each fire time waits its turn: the job comes back to this one.
                next_run_time = scheduled
                break
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
    spent = runs_left is not None and len(started) >= runs_left
    if spent:
        next_run_time = None
    hold = 0
    if (
        next_run_time is not None
        and next_run_time <= now
        and (overlap == "buffer_all" or overlap == "buffer_one")
    ):
        # A fire time waits (buffer_all's backlog) for a slot that the runs just started
        # fill: held until one of them ends. Not before: a job whose runs end before its
        # next fire time is never held, and one that a fire time finds busy is held then
        # (above). (Never cancel_other here: its next fire time must be acquired, to
        # cancel the runs.)
        hold = job.max_instances
    remove = next_run_time is None
    if remove and not spent and (started or lease.running) and reruns_abandoned(job, 1):
        # Its trigger has ended, but a run of it may still be abandoned and then needs
        # the job to be rerun: keep it, without a next run time, until its last run
        # ends (AsyncScheduler removes it then).
        remove = False
    return Release(
        lease=lease,
        next_run_time=next_run_time,
        started=started,
        finished=finished,
        remove=remove,
        hold_while_running=hold,
    )


def reruns_abandoned(job: Job, attempt: int) -> bool:
    """Whether attempt number ``attempt`` of a run of ``job``, once abandoned by a
    scheduler that died or stopped, is run again (``on_crash`` and ``retry``)."""
    policy = job.retry
    if job.on_crash == "abandon":
        return False
    if job.on_crash == "rerun":
        return attempt < (policy.attempts if policy is not None else RERUN_ATTEMPTS)
    return policy is not None and policy.retries(attempt, None)


def is_finishing(job: Job, now: datetime) -> bool:
    """Whether ``job``'s trigger has ended, so that it is kept only for runs that may
    still be rerun (and removed after the last one)."""
    return reruns_abandoned(job, 1) and job.trigger.next(now) is None


def fired_since(job: Job, run: Run, now: datetime) -> bool:
    """Whether ``job``'s trigger had a fire time after ``run``'s, due by ``now``: one
    that may have found the job busy while ``run`` went on, and had it held
    (:attr:`Release.hold_while_running`) by whichever scheduler acquired it."""
    try:
        later = job.trigger.next(run.scheduled_time)
    except Exception:
        return True  # plan_release reports the trigger's failure; here, assume held
    return later is not None and later <= now
