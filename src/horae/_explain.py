"""Why a job ran, or did not, at its last fire times: :func:`explain_job`.

Everything here is read from the store (the job and its run history) and worked out
again from the job's options and trigger: nothing is recorded for the sake of
explaining. What a store cannot tell (a fire time that passed while the job was paused
leaves no record) is said as what it most likely was, with the other possibilities.
"""

from __future__ import annotations

import collections
import textwrap
from collections.abc import Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

import attrs

from horae._format import describe_trigger, duration, local_time, when
from horae._planning import reruns_abandoned
from horae.errors import DeserializationError, JobLookupError
from horae.jobs import RERUN_ATTEMPTS, Job, Run, RunOutcome
from horae.stores.base import Store
from horae.triggers.base import Trigger

__all__ = ["Explanation", "FireTimeExplanation", "explain_job"]

#: How many steps of a job's trigger are taken at most to find fire times with no record.
MAX_TRIGGER_STEPS = 1000
#: A run that starts less than this after its fire time started on time.
_ON_TIME = timedelta(seconds=1)
_BUFFERING = frozenset({"buffer_one", "buffer_all", "cancel_other"})
_WIDTH = 88

# The statuses of a fire time that has no outcome (yet).
_IN_PROGRESS = "in progress"
_DUE = "due"
_COALESCED = "coalesced"
_NO_RECORD = "no record"


@attrs.frozen(kw_only=True)
class FireTimeExplanation:
    """What became of one fire time of a job, and why.

    The attempts of one fire time (retries, reruns after a crash) are one entry.

    Attributes:
        scheduled_time: the fire time.
        status: the outcome of its last attempt (``"success"``, ``"error"``,
            ``"timeout"``, ``"missed"``, ``"skipped"``, ``"abandoned"``,
            ``"cancelled"``), or ``"in progress"`` (an attempt is in flight),
            ``"due"`` (it waits to start), ``"coalesced"`` (a later run covered it,
            ``coalesce=True``) or ``"no record"`` (the store has no run for it).
        outcome: the outcome of its last attempt; ``None`` while one is in flight and
            when the store has no run for it.
        attempts: how many attempts are on record (0: none).
        reason: why, in a sentence or two.
        runs: the records of its attempts, the first attempt first.
    """

    scheduled_time: datetime
    status: str
    reason: str
    outcome: RunOutcome | None = None
    attempts: int = 0
    runs: tuple[Run, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: times in ISO 8601, run ids as text."""
        return {
            "scheduled_time": self.scheduled_time.isoformat(),
            "status": self.status,
            "outcome": None if self.outcome is None else self.outcome.value,
            "attempts": self.attempts,
            "reason": self.reason,
            "run_ids": [str(run.id) for run in self.runs],
        }


@attrs.frozen(kw_only=True)
class Explanation:
    """Why a job did or did not run at its last fire times (``horae explain``).

    ``str(explanation)`` is a readable text, with times in the zone it was made for;
    :meth:`to_dict` gives the same as plain JSON values.

    Example::

        explanation = await scheduler.explain("nightly-report")
        print(explanation)              # or: horae explain nightly-report --store URL
        if explanation.state == "paused":
            ...

    Attributes:
        job_id: the job's id.
        job: the job as stored, or ``None`` when it no longer exists (or cannot be read
            back): the explanation then says what its run history holds.
        state: where the job stands, in a few words: ``"scheduled"``, ``"due"``,
            ``"running"``, ``"waiting for a free slot"``, ``"paused"``,
            ``"finishing"`` (its trigger has ended; kept until its last run ends),
            ``"removed"`` or ``"unreadable"``.
        summary: one or two sentences on that state.
        fire_times: the job's last fire times, newest first: those on record and those
            its trigger had with no record.
        notes: what the explanation could not tell (a history shorter than asked,
            fire times not looked at).
        now: the instant the explanation was made at.
        timezone: the zone its text shows times in.
    """

    job_id: str
    job: Job | None
    state: str
    summary: str
    fire_times: tuple[FireTimeExplanation, ...] = ()
    notes: tuple[str, ...] = ()
    now: datetime
    timezone: tzinfo = attrs.field(eq=False)

    def __str__(self) -> str:
        tz, now = self.timezone, self.now
        lines = [f"job {self.job_id!r}: {self.state}", _wrap(self.summary, "  ")]
        job = self.job
        if job is not None:
            lines.append(_wrap(f"trigger: {describe_trigger(job)}", "  ", "    "))
            lines.append(_wrap(f"options: {_options(job)}", "  ", "    "))
        lines.append("")
        if not self.fire_times:
            lines.append("No fire time to show: the job has no run on record.")
        else:
            lines.append(f"Last {_count(len(self.fire_times), 'fire time')}, newest first:")
            times = [when(entry.scheduled_time, tz, now) for entry in self.fire_times]
            width = max(len(text) for text in times)
            for text, entry in zip(times, self.fire_times, strict=True):
                attempt = entry.runs[-1].attempt if entry.runs else 1
                attempts = f" (attempt {attempt})" if attempt > 1 else ""
                lines.append(f"  {text.ljust(width)}  {entry.status}{attempts}")
                lines.append(_wrap(entry.reason, "      "))
        if self.notes:
            lines.append("")
            lines.extend(_wrap(f"Note: {note}", "", "  ") for note in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: times in ISO 8601, durations in seconds."""
        return {
            "job_id": self.job_id,
            "state": self.state,
            "summary": self.summary,
            "now": self.now.isoformat(),
            "timezone": str(self.timezone),
            "job": None if self.job is None else _job_to_dict(self.job),
            "fire_times": [entry.to_dict() for entry in self.fire_times],
            "notes": list(self.notes),
        }


async def explain_job(
    store: Store, job_id: str, *, now: datetime, timezone: tzinfo, limit: int = 10
) -> Explanation:
    """Explain why the job ``job_id`` ran, or did not, at its last ``limit`` fire times.

    It reads the job and its run history from ``store``, groups the attempts of each
    fire time, and walks the job's trigger from the oldest fire time it shows to
    ``now`` (at most :data:`MAX_TRIGGER_STEPS` steps) to find fire times that left no
    record (the job was paused then, or a later run covered them).

    Args:
        store: the store the job is in (started).
        job_id: the job's id.
        now: the current instant (the scheduler's clock).
        timezone: the zone ``str()`` of the result shows times in.
        limit: how many fire times to explain at most.

    Raises:
        JobLookupError: no job has that id and the store has no run of one that had.
        ValueError: ``limit`` is below 1.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit: {limit!r} is not allowed; give a whole number of at least 1")
    job: Job | None = None
    unreadable: str | None = None
    try:
        job = await store.get_job(job_id)
    except JobLookupError:
        missing = True
    except DeserializationError as exc:
        missing, unreadable = False, str(exc)
        if "cannot be read back" not in unreadable:
            unreadable = f"the stored job cannot be read back ({unreadable or exc!r})"
    else:
        missing = False
    fetch = limit * _attempts_allowed(job, RERUN_ATTEMPTS) + (job.max_instances if job else 1) + 1
    runs = await store.get_runs(job_id, limit=fetch)
    if missing and not runs:
        raise JobLookupError(job_id)
    return _Explainer(job_id, job, unreadable, runs, len(runs) >= fetch, now, timezone, limit).run()


class _Explainer:
    """The work of one :func:`explain_job` call."""

    def __init__(
        self,
        job_id: str,
        job: Job | None,
        unreadable: str | None,
        runs: list[Run],
        more: bool,
        now: datetime,
        tz: tzinfo,
        limit: int,
    ) -> None:
        self.job_id = job_id
        self.job = job
        self.unreadable = unreadable
        self.runs = runs
        self.now = now
        self.tz = tz
        self.limit = limit
        self.notes: list[str] = []
        self.in_flight = [run for run in runs if run.outcome is None]
        groups: dict[datetime, list[Run]] = collections.defaultdict(list)
        for run in runs:
            groups[run.scheduled_time].append(run)
        recorded = sorted(groups, reverse=True)
        if more and len(recorded) > 1:
            # The fetch was full: the oldest fire time read may miss some of its attempts.
            recorded.pop()
        self.groups = {t: sorted(groups[t], key=_attempt_order) for t in recorded[:limit]}
        self.more = more or len(recorded) > limit

    # ------------------------------------------------------------------ result

    def run(self) -> Explanation:
        state, summary = self._state()
        entries = [self._recorded(t, runs) for t, runs in self.groups.items()]
        entries += self._unrecorded(summary)
        entries.sort(key=lambda entry: entry.scheduled_time, reverse=True)
        entries = entries[: self.limit]
        if self.runs and not self.more and len(entries) < self.limit:
            count = len(self.groups)
            self.notes.append(
                f"only {_count(count, 'fire time')} of this job {_are(count)} on record; "
                "older ones are unknown (the job is newer, or the store trimmed its history "
                "to its run_retention runs per job, 100 by default)"
            )
        return Explanation(
            job_id=self.job_id,
            job=self.job,
            state=state,
            summary=summary,
            fire_times=tuple(entries),
            notes=tuple(self.notes),
            now=self.now,
            timezone=self.tz,
        )

    # ------------------------------------------------------------------- state

    def _state(self) -> tuple[str, str]:
        job, now = self.job, self.now
        if job is None:
            if self.unreadable is not None:
                return "unreadable", (
                    f"{self.unreadable}. Schedulers report it as a JobError and look at it "
                    "again a minute later, so it runs once it can be read. Its run history "
                    "follows."
                )
            still = ""
            if self.in_flight:
                still = f"; {_count(len(self.in_flight), 'run')} of it still in progress"
            return "removed", (
                f"job {self.job_id!r} no longer exists: it was removed, its trigger ended, "
                f"or it reached max_runs{still}. Its run history follows."
            )
        nrt = job.next_run_time
        if nrt is None:
            if job.pause_note is None and self.in_flight and _ended(job, now):
                return "finishing", (
                    "its trigger has no fire time left; the job is kept, without a next "
                    f"run time, until its last run ends ({self._where()}), then removed."
                    + self._if_dead()
                )
            why = f"paused: {job.pause_note}" if job.pause_note else "paused (no note given)"
            return "paused", (
                f"{why}. Fire times that pass while a job is paused are not run; "
                "resume_job goes on from the next fire time after it."
            )
        if nrt <= now:
            if self._busy() and job.overlap in _BUFFERING:
                return "waiting for a free slot", self._waiting_reason() + "." + self._if_dead()
            return "due", self._due_reason()
        if self.in_flight:
            busy = self._when_busy() if self._busy() else ""
            upcoming = when(nrt, self.tz, now)
            return "running", f"{self._where()}; next fire time {upcoming}{busy}." + self._if_dead()
        return "scheduled", f"next fire time {when(nrt, self.tz, now)}"

    def _busy(self) -> bool:
        job = self.job
        assert job is not None
        return job.overlap != "allow_all" and len(self.in_flight) >= job.max_instances

    def _where(self) -> str:
        """``"1 run in progress on scheduler a"``."""
        schedulers = sorted({run.scheduler_id for run in self.in_flight})
        names = ", ".join(schedulers)
        on = f" on scheduler{'s' if len(schedulers) > 1 else ''} {names}" if names else ""
        return f"{_count(len(self.in_flight), 'run')} in progress{on}"

    def _if_dead(self) -> str:
        if len(self.in_flight) == 1:
            return (
                " If that scheduler died, another takes the run over once its lease "
                "expires, and records it abandoned."
            )
        return (
            " If a scheduler running one of them died, another takes that run over once "
            "its lease expires, and records it abandoned."
        )

    def _when_busy(self) -> str:
        job = self.job
        assert job is not None
        if job.overlap == "skip":
            return (
                f"; if it is still going then, that fire time is recorded skipped "
                f"(max_instances={job.max_instances}, overlap='skip')"
            )
        if job.overlap == "cancel_other":
            return "; that fire time cancels it (overlap='cancel_other')"
        return f"; that fire time then waits for a free slot (overlap={job.overlap!r})"

    def _waiting_reason(self) -> str:
        job = self.job
        assert job is not None
        assert job.next_run_time is not None
        since = when(job.next_run_time, self.tz, self.now)
        if job.overlap == "cancel_other":
            return (
                f"due since {since}, waiting for its runs in progress to end: "
                f"{self._where()}, which overlap='cancel_other' cancels (in another "
                "process too, best effort: if that message is lost, it ends on its own)"
            )
        if job.overlap == "buffer_all":
            then = "holds this and later fire times until it ends; then each runs in turn"
        elif job.coalesce:
            then = (
                "holds the job until it ends; then one run, for the latest fire time that "
                "waited, covers the others (coalesce=True)"
            )
        else:
            then = (
                "holds the job until it ends; then the first fire time that waited runs, "
                "the later ones are recorded skipped (coalesce=False)"
            )
        where = self._where()
        return f"waiting for a free slot since {since}: {where} (overlap={job.overlap!r} {then})"

    def _due_reason(self) -> str:
        job = self.job
        assert job is not None
        assert job.next_run_time is not None
        text = (
            f"due since {when(job.next_run_time, self.tz, self.now)} and not started: no "
            "scheduler has acquired it yet — none is running on this store, they are all "
            "paused, or a scheduler that died still holds its lease until it expires "
            "(lease_duration, 30 s by default)"
        )
        due = self._due_times()
        planned = due
        if len(due) > 1:
            text += f"; {len(due)} fire times are due"
            if job.coalesce and job.overlap != "buffer_all":
                text += ", which coalesce=True runs once, as the latest"
                planned = due[-1:]
        grace = job.misfire_grace_time
        late = [t for t in planned if grace is not None and self.now - t > grace]
        if late:
            limit = f"misfire_grace_time={duration(grace)}" if grace is not None else ""
            if len(planned) == 1:
                text += f"; it is later than {limit} already, so it will be recorded missed"
            else:
                text += (
                    f"; {len(late)} of them are later than {limit} already and will be "
                    "recorded missed"
                )
        elif self._busy():
            text += (
                f"; {self._where()}, so it will be recorded skipped when a scheduler takes "
                f"it up (max_instances={job.max_instances}, overlap='skip')"
            )
        return text

    def _due_times(self) -> list[datetime]:
        """The job's fire times from its next run time to now (at most MAX_TRIGGER_STEPS)."""
        job = self.job
        assert job is not None
        due: list[datetime] = []
        t = job.next_run_time
        while t is not None and t <= self.now and len(due) < MAX_TRIGGER_STEPS:
            due.append(t)
            t = _step(job.trigger, t)
        return due

    # --------------------------------------------------------- recorded ones

    def _recorded(self, scheduled: datetime, runs: list[Run]) -> FireTimeExplanation:
        last = runs[-1]
        reason = self._reason(scheduled, runs)
        return FireTimeExplanation(
            scheduled_time=scheduled,
            status=_IN_PROGRESS if last.outcome is None else last.outcome.value,
            outcome=last.outcome,
            attempts=len(runs),
            reason=reason,
            runs=tuple(runs),
        )

    def _reason(self, scheduled: datetime, runs: list[Run]) -> str:
        job, last, earlier = self.job, runs[-1], runs[:-1]
        outcome = last.outcome
        after = f" after {_earlier(earlier)}" if earlier else ""
        of = self._of(last.attempt)
        if outcome is None:
            if last.attempt > 1:
                rerun = " (a rerun)" if _was_abandoned(earlier) else ""
                return (
                    f"attempt {last.attempt}{of}{rerun}{after}, on scheduler "
                    f"{last.scheduler_id}: running, or waiting for its retry"
                )
            since = "" if last.started_at is None else f" since {self._when(last.started_at)}"
            return f"running{since} on scheduler {last.scheduler_id}"
        if outcome is RunOutcome.SUCCESS:
            text = self._started(last)
            if last.attempt > 1:
                rerun = " (a rerun)" if _was_abandoned(earlier) else ""
                text = f"succeeded on attempt {last.attempt}{of}{rerun}{after}; {text}"
            if last.coalesced:
                text += (
                    f"; it covered {_count(last.coalesced, 'earlier fire time')} (coalesce=True)"
                )
            return text
        if outcome in (RunOutcome.ERROR, RunOutcome.TIMEOUT):
            if outcome is RunOutcome.ERROR:
                text = f"failed: {_last_line(last.error) or 'an error'}"
            elif job is not None and job.timeout is not None:
                text = f"timed out: it ran longer than timeout={duration(job.timeout)}"
            else:
                text = "timed out: it ran longer than the job's timeout"
            if last.attempt > 1:
                text += f" (attempt {last.attempt}{of}{after})"
            return text + self._not_retried(last)
        if outcome is RunOutcome.MISSED:
            limit = None if job is None else job.misfire_grace_time
            grace = "" if limit is None else f"={duration(limit)}"
            looked = (last.finished_at or scheduled) - scheduled
            text = (
                f"could not start within misfire_grace_time{grace}; it was looked at "
                f"{duration(looked)} after its fire time (no scheduler took the job up "
                "earlier: none was running, or the job was held or leased elsewhere)"
            )
            if last.coalesced:
                text += (
                    f"; it stands for {_count(last.coalesced, 'earlier fire time')} too "
                    "(coalesce=True)"
                )
            return text
        if outcome is RunOutcome.SKIPPED:
            return self._skipped(last)
        if outcome is RunOutcome.ABANDONED:
            text = f"abandoned: {last.error or f'by scheduler {last.scheduler_id}'}"
            if last.attempt > 1:
                text += f" (attempt {last.attempt}{of}{after})"
            return text + self._not_rerun(last)
        # CANCELLED
        text = last.error or "cancelled"
        if last.started_at is not None and last.finished_at is not None:
            text += f"; it had run {duration(last.finished_at - last.started_at)}"
        return text

    def _when(self, moment: datetime) -> str:
        return when(moment, self.tz, self.now)

    def _of(self, attempt: int) -> str:
        allowed = _attempts_allowed(self.job, 1)
        return f" of {allowed}" if self.job is not None and allowed >= attempt else ""

    def _started(self, run: Run) -> str:
        if run.started_at is None:
            return "its start is not on record"
        late = run.started_at - run.scheduled_time
        job = self.job
        if late < _ON_TIME:
            text = "started on time"
        elif run.attempt > 1:
            text = f"started {duration(late)} after its fire time"
        else:
            text = f"started {duration(late)} late"
            if job is not None and job.jitter is not None and late <= job.jitter + _ON_TIME:
                text += f" (jitter={duration(job.jitter)})"
        if run.finished_at is not None:
            text += f", took {duration(run.finished_at - run.started_at)}"
        return text

    def _not_retried(self, run: Run) -> str:
        job = self.job
        if job is None:
            return ""
        if job.retry is None:
            return "; not retried: the job has no retry policy"
        if run.attempt >= job.retry.attempts:
            return f"; the last of retry.attempts={job.retry.attempts}"
        return "; not retried: the job's Retry(on=...) does not cover it"

    def _not_rerun(self, run: Run) -> str:
        job = self.job
        if job is None:
            return "; not rerun"
        if job.on_crash == "abandon":
            return "; not rerun (on_crash='abandon')"
        if reruns_abandoned(job, run.attempt):
            return "; a rerun was due, but none is on record (the job may have ended)"
        if job.on_crash == "rerun" or (job.retry is not None and job.retry.abandoned):
            return f"; not rerun: it was the last of {_attempts_allowed(job, 1)} attempts"
        return "; not rerun (on_crash='rerun' would run it again)"

    def _skipped(self, run: Run) -> str:
        job = self.job
        if job is not None and job.overlap == "buffer_one" and not job.coalesce:
            return (
                "skipped: another fire time was already waiting for the free slot "
                "(overlap='buffer_one', coalesce=False)"
            )
        limit = "max_instances" if job is None else f"max_instances={job.max_instances}"
        text = f"skipped: the job had as many runs in progress as {limit} allows (overlap='skip')"
        at = run.finished_at or run.scheduled_time
        going = [
            other
            for other in self.runs
            if other.scheduled_time < run.scheduled_time
            and other.outcome not in (RunOutcome.MISSED, RunOutcome.SKIPPED)
            and (other.started_at is None or other.started_at <= at)
            and (other.finished_at is None or other.finished_at > at)
        ]
        if going:
            times = ", ".join(local_time(other.scheduled_time, self.tz) for other in going[:3])
            text += f"; still going: the run for {times}"
        return text

    # ------------------------------------------------------- unrecorded ones

    def _unrecorded(self, state_reason: str) -> list[FireTimeExplanation]:
        """The fire times since the oldest one shown (or due now) that have no record."""
        if self.job is None:
            return []
        gaps, covered = self._walk()
        newest = max(self.groups, default=None)
        nrt = self.job.next_run_time
        entries = []
        for t in sorted(gaps)[-self.limit :]:
            if t in covered:
                by = covered[t]
                final = self.groups[by][-1].outcome
                status, reason = (
                    _COALESCED,
                    (
                        f"covered by the {final or 'in-progress'} run for "
                        f"{local_time(by, self.tz)} (coalesce=True: a backlog of fire times runs "
                        "once, as the latest)"
                    ),
                )
            elif nrt is not None and nrt <= t:
                status, reason = _DUE, self._also_due(t, state_reason)
            elif nrt is None and (newest is None or t > newest):
                status, reason = (
                    _NO_RECORD,
                    (
                        "no record: the job is paused, and fire times that pass while it is "
                        "paused are not run (it may have been paused since before this one)"
                    ),
                )
            else:
                status, reason = (
                    _NO_RECORD,
                    (
                        "no record: the job was paused then, or rescheduled or replaced; "
                        "resume_job, reschedule_job and add_job(replace_existing=True) skip "
                        "fire times that passed"
                    ),
                )
            entries.append(FireTimeExplanation(scheduled_time=t, status=status, reason=reason))
        return entries

    def _walk(self) -> tuple[list[datetime], dict[datetime, datetime]]:
        """The trigger's fire times from the oldest one shown up to now that have no
        record, and those of them a later record covered (``coalesced``), with it."""
        job, now = self.job, self.now
        assert job is not None
        nrt = job.next_run_time
        start = min(self.groups, default=nrt if nrt is not None and nrt <= now else None)
        if start is None:
            return [], {}
        gaps: list[datetime] = []
        pending: list[datetime] = []  # those since the last fire time on record
        covered: dict[datetime, datetime] = {}
        steps = 0
        t: datetime | None = start
        while True:
            last, t = t, _step(job.trigger, t)
            if t is None or t > now:
                break
            if steps == MAX_TRIGGER_STEPS:
                self.notes.append(
                    f"the trigger's fire times after {local_time(last or start, self.tz)} "
                    f"were not looked at (more than {MAX_TRIGGER_STEPS:,} since the oldest "
                    "one shown)"
                )
                break
            steps += 1
            runs = self.groups.get(t)
            if runs is None:
                gaps.append(t)
                pending.append(t)
                continue
            folded = max(run.coalesced for run in runs)
            for earlier in pending[len(pending) - folded :] if folded else ():
                covered[earlier] = t
            pending = []
        # A next run time set by hand (run-now, modify_job) is off the trigger's steps.
        if nrt is not None and nrt <= now and nrt not in self.groups and nrt not in gaps:
            gaps.append(nrt)
        return gaps, covered

    def _also_due(self, t: datetime, state_reason: str) -> str:
        job = self.job
        assert job is not None
        assert job.next_run_time is not None
        if t == job.next_run_time:
            return state_reason
        text = f"due too, behind the fire time of {local_time(job.next_run_time, self.tz)}"
        if job.overlap == "buffer_all":
            return text + " (overlap='buffer_all': each runs in turn)"
        if job.coalesce:
            return text + " (coalesce=True: one run covers them all, as the latest)"
        return text


# ---------------------------------------------------------------- helpers


def _attempt_order(run: Run) -> tuple[int, datetime]:
    return (run.attempt, run.finished_at or datetime.max.replace(tzinfo=run.scheduled_time.tzinfo))


def _attempts_allowed(job: Job | None, unknown: int) -> int:
    """Attempts in all a fire time of ``job`` may have (``unknown`` without a job)."""
    if job is None:
        return unknown
    attempts = job.retry.attempts if job.retry is not None else 1
    if job.on_crash == "rerun" and job.retry is None:
        attempts = RERUN_ATTEMPTS
    return attempts


def _ended(job: Job, now: datetime) -> bool:
    try:
        return job.trigger.next(now) is None
    except Exception:  # a trigger that raises is explained elsewhere (a JobError)
        return False


def _step(trigger: Trigger, after: datetime | None) -> datetime | None:
    if after is None:
        return None
    try:
        return trigger.next(after)
    except Exception:  # a trigger that raises: the scheduler reports it (a JobError)
        return None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _are(n: int) -> str:
    return "is" if n == 1 else "are"


def _last_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[-1].strip() if lines else ""


def _was_abandoned(runs: Sequence[Run]) -> bool:
    return bool(runs) and runs[-1].outcome is RunOutcome.ABANDONED


def _earlier(runs: Sequence[Run]) -> str:
    """``"an error"``, ``"2 errors and a timeout"``, ``"attempt 1 was abandoned by
    scheduler a (...)"``: what became of the attempts before the last one."""
    parts = []
    counts = collections.Counter(run.outcome for run in runs)
    for outcome, one, many in (
        (RunOutcome.ERROR, "an error", "errors"),
        (RunOutcome.TIMEOUT, "a timeout", "timeouts"),
        (RunOutcome.CANCELLED, "a cancelled attempt", "cancelled attempts"),
    ):
        n = counts[outcome]
        if n:
            parts.append(one if n == 1 else f"{n} {many}")
    for run in runs:
        if run.outcome is RunOutcome.ABANDONED:
            if run.error and "shut down" in run.error:
                how = "cut off when it shut down"
            else:
                how = "it died, or lost the store for longer than its lease"
            parts.append(
                f"attempt {run.attempt} was abandoned by scheduler {run.scheduler_id} ({how})"
            )
    if not parts:
        return _count(len(runs), "earlier attempt")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _options(job: Job) -> str:
    grace = "None" if job.misfire_grace_time is None else duration(job.misfire_grace_time)
    parts = [
        f"max_instances={job.max_instances}",
        f"overlap={job.overlap!r}",
        f"coalesce={job.coalesce}",
        f"misfire_grace_time={grace}",
    ]
    if job.timeout is not None:
        parts.append(f"timeout={duration(job.timeout)}")
    if job.retry is not None:
        parts.append(f"retry.attempts={job.retry.attempts}")
    if job.on_crash is not None:
        parts.append(f"on_crash={job.on_crash!r}")
    if job.max_runs is not None:
        parts.append(f"max_runs={job.max_runs}")
    if job.pause_after_failures is not None:
        parts.append(f"pause_after_failures={job.pause_after_failures}")
    return ", ".join(parts)


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def _job_to_dict(job: Job) -> dict[str, Any]:
    """The job's schedule and the options that decide whether a fire time runs."""
    return {
        "trigger": describe_trigger(job),
        "next_run_time": None if job.next_run_time is None else job.next_run_time.isoformat(),
        "paused": job.next_run_time is None,
        "pause_note": job.pause_note,
        "max_instances": job.max_instances,
        "overlap": job.overlap,
        "coalesce": job.coalesce,
        "misfire_grace_time": _seconds(job.misfire_grace_time),
        "jitter": _seconds(job.jitter),
        "timeout": _seconds(job.timeout),
        "retry_attempts": None if job.retry is None else job.retry.attempts,
        "on_crash": job.on_crash,
        "max_runs": job.max_runs,
        "pause_after_failures": job.pause_after_failures,
    }


def _wrap(text: str, indent: str, subsequent: str | None = None) -> str:
    return textwrap.fill(
        text,
        width=_WIDTH,
        initial_indent=indent,
        subsequent_indent=indent if subsequent is None else subsequent,
        break_long_words=False,
        break_on_hyphens=False,
    )
