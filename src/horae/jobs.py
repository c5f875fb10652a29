"""Jobs, runs and their outcomes: the values the scheduler and the stores exchange."""

from __future__ import annotations

import enum
import random
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import attrs

from horae.errors import JobArgumentError

if TYPE_CHECKING:
    from horae.scheduler import AsyncScheduler
    from horae.triggers.base import Trigger

__all__ = ["OVERLAP_POLICIES", "Job", "JobDefaults", "Retry", "Run", "RunOutcome"]

#: What a job does with a fire time that comes while ``max_instances`` runs of it are
#: in progress (``overlap=``).
OVERLAP_POLICIES = ("skip", "buffer_one", "buffer_all", "cancel_other", "allow_all")
#: What happens to a run abandoned by a scheduler that died (``on_crash=``).
CRASH_POLICIES = ("abandon", "rerun")
#: Attempts in all for ``on_crash="rerun"`` when the job has no retry policy.
RERUN_ATTEMPTS = 3
_UTC = timezone.utc
_KEY_NAMESPACE = uuid.UUID("6f1d3c0e-4b7a-5e2f-9c1d-0a8b7e6f5d4c")


class RunOutcome(str, enum.Enum):
    """How one fire time of a job ended."""

    #: The callable returned.
    SUCCESS = "success"
    #: The callable raised; ``Run.error`` holds the traceback text.
    ERROR = "error"
    #: The run exceeded the job's ``timeout``.
    TIMEOUT = "timeout"
    #: The run would have started later than ``misfire_grace_time`` after its fire time.
    MISSED = "missed"
    #: The job had ``max_instances`` runs going already.
    SKIPPED = "skipped"
    #: The scheduler running it died; another scheduler found its lease expired.
    ABANDONED = "abandoned"
    #: A newer fire time cancelled it (``overlap="cancel_other"``).
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


def _check_max_instances(_: Any, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise JobArgumentError(
            f"{attribute.name}: {value!r} is not allowed; give a whole number of at least 1"
        )


def _check_optional_count(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise JobArgumentError(
            f"{attribute.name}: {value!r} is not allowed; give a whole number of at least 1, "
            "or None"
        )


def _choice(choices: tuple[str, ...], *, optional: bool = False) -> Any:
    def check(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if optional and value is None:
            return
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices)
            raise JobArgumentError(
                f"{attribute.name}: {value!r} is not a valid choice; use one of {listed}"
                + (" (or None)" if optional else "")
            )

    return check


def _check_optional_text(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise JobArgumentError(f"{attribute.name}: {value!r} is not a string")


def _to_optional_timedelta(value: float | timedelta | None) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value  # type: ignore[return-value]  # rejected by the validator
    return timedelta(seconds=value)


def _check_optional_duration(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, timedelta):
        raise JobArgumentError(
            f"{attribute.name}: {value!r} is not a duration; give seconds (a number), "
            "a timedelta or None"
        )
    if value < timedelta(0):
        raise JobArgumentError(
            f"{attribute.name}: {value.total_seconds():g} seconds is negative; "
            "give zero or more seconds, or None"
        )


def _check_bool(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, bool):
        raise JobArgumentError(f"{attribute.name}: {value!r} is not True or False")


def _check_aware_or_none(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and (
        not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None
    ):
        raise JobArgumentError(f"{attribute.name}: {value!r} is not a timezone-aware datetime")


def _to_timedelta(value: float | timedelta) -> timedelta:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    return value  # type: ignore[return-value]  # checked by the validator


def _check_positive_duration(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, timedelta) or value <= timedelta(0):
        raise JobArgumentError(
            f"retry.{attribute.name}: {value!r} is not allowed; give a number of seconds "
            "above 0 or a timedelta"
        )


def _check_attempts(_: Any, attribute: attrs.Attribute[int], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise JobArgumentError(
            f"retry.attempts: {value!r} is not allowed; give the number of attempts in all "
            "(the first run included), at least 1"
        )


def _check_multiplier(_: Any, attribute: attrs.Attribute[float], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 1:
        raise JobArgumentError(f"retry.multiplier: {value!r} is not allowed; give 1 or more")


def _check_jitter(_: Any, attribute: attrs.Attribute[float], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise JobArgumentError(
            f"retry.jitter: {value!r} is not allowed; give a fraction from 0 to 1"
        )


def _to_exception_types(value: Any) -> Any:
    if isinstance(value, type):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def _check_exception_types(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or not all(
        isinstance(t, type) and issubclass(t, BaseException) for t in value
    ):
        raise JobArgumentError(
            f"retry.on: {value!r} is not allowed; give an exception class or a tuple of them"
        )


@attrs.frozen
class Retry:
    """When and how often a failed run of a job is tried again.

    A run that raises one of ``on`` (a timeout counts as ``TimeoutError``), or that was
    abandoned because its scheduler died (with ``abandoned=True``), is tried again for
    the same fire time, up to ``attempts`` runs in all. Each attempt is a :class:`Run`
    of its own (``Run.attempt`` counts them); the last failure is final. While a retry
    waits, it keeps its place in flight, so ``max_instances`` counts it.

    The delay before attempt ``n + 1`` is ``backoff * multiplier ** (n - 1)``, at most
    ``max_backoff``, then shortened at random by up to ``jitter`` of itself (so that
    many jobs failing together do not retry in lockstep).

    Example::

        await scheduler.add_job(sync_feed, "interval", minutes=5,
                                retry=Retry(attempts=3, backoff=10, on=(OSError,)))

    Attributes:
        attempts: runs in all, the first one included (``1``: never retry).
        backoff: seconds (or a timedelta) before the first retry.
        multiplier: how much each further delay grows.
        max_backoff: the longest delay.
        jitter: the fraction (0 to 1) of each delay that is random.
        on: the exception classes that are retried.
        abandoned: whether a run abandoned by a crashed scheduler is retried.
    """

    attempts: int = attrs.field(default=3, validator=_check_attempts)
    backoff: timedelta = attrs.field(
        default=timedelta(seconds=1), converter=_to_timedelta, validator=_check_positive_duration
    )
    multiplier: float = attrs.field(default=2.0, validator=_check_multiplier)
    max_backoff: timedelta = attrs.field(
        default=timedelta(minutes=5), converter=_to_timedelta, validator=_check_positive_duration
    )
    jitter: float = attrs.field(default=0.5, validator=_check_jitter)
    on: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=_to_exception_types, validator=_check_exception_types
    )
    abandoned: bool = attrs.field(default=True, validator=_check_bool)

    def retries(self, attempt: int, exc: BaseException | None) -> bool:
        """Whether attempt number ``attempt``, which failed with ``exc``, is tried again.

        ``exc`` is ``None`` for a run that was abandoned.
        """
        if attempt >= self.attempts:
            return False
        if exc is None:
            return self.abandoned
        return isinstance(exc, self.on)

    def delay(self, attempt: int) -> timedelta:
        """How long to wait after attempt number ``attempt`` failed (jitter included)."""
        cap = self.max_backoff.total_seconds()
        seconds = self.backoff.total_seconds()
        for _ in range(attempt - 1):  # grows until the cap; no overflow however many
            seconds *= self.multiplier
            if seconds >= cap:
                break
        seconds = min(seconds, cap)
        return timedelta(seconds=seconds * (1 - self.jitter * random.random()))


def _check_retry(_: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, Retry):
        raise JobArgumentError(
            f"retry: {value!r} is not a retry policy; give Retry(attempts=..., backoff=...), "
            "a number of attempts, or None"
        )


def _to_retry(value: Any) -> Any:
    # retry=3 is short for Retry(attempts=3).
    if isinstance(value, int) and not isinstance(value, bool):
        return Retry(attempts=value)
    return value


def _retry_option() -> Any:
    return attrs.field(default=None, converter=_to_retry, validator=_check_retry)


def _duration_option() -> Any:
    # One definition for the duration options that jobs and job defaults share.
    return attrs.field(
        default=None, converter=_to_optional_timedelta, validator=_check_optional_duration
    )


@attrs.frozen
class JobDefaults:
    """Options that jobs take when ``add_job`` does not give them.

    The defaults favour running late over skipping silently: a fire time that could not
    start on time still runs (``misfire_grace_time=None`` means no limit), and a backlog of
    fire times collapses into one run (``coalesce=True``).
    """

    coalesce: bool = attrs.field(default=True, validator=_check_bool)
    max_instances: int = attrs.field(default=1, validator=_check_max_instances)
    misfire_grace_time: timedelta | None = _duration_option()
    jitter: timedelta | None = _duration_option()
    timeout: timedelta | None = _duration_option()
    retry: Retry | None = _retry_option()
    overlap: str = attrs.field(default="skip", validator=_choice(OVERLAP_POLICIES))
    on_crash: str | None = attrs.field(
        default=None, validator=_choice(CRASH_POLICIES, optional=True)
    )
    pause_after_failures: int | None = attrs.field(default=None, validator=_check_optional_count)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | JobDefaults | None) -> JobDefaults:
        """Build defaults from a dict as APScheduler 3 takes ``job_defaults``."""
        if values is None:
            return cls()
        if isinstance(values, JobDefaults):
            return values
        known = {a.name for a in attrs.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise JobArgumentError(
                f"job_defaults: unknown option {unknown[0]!r}; "
                f"valid options are {', '.join(sorted(known))}"
            )
        return cls(**values)


def _check_id(_: Any, attribute: attrs.Attribute[str], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise JobArgumentError(
            f"{attribute.name}: {value!r} is not a valid job id; give a non-empty string"
        )


@attrs.frozen(kw_only=True)
class Job:
    """A scheduled job: what to call, when (its trigger) and how (its options).

    Jobs are values. Change one through the scheduler (``modify_job``, ``pause_job``...) or
    the verbs bound to a job the scheduler returned (``await job.pause()``).

    Attributes:
        id: unique id within the store.
        func: the callable.
        func_ref: its ``"module:qualname"`` reference when it has one (persistent stores
            need it).
        trigger: when the job fires.
        overlap: what a fire time does while ``max_instances`` runs of the job are in
            progress: ``"skip"`` (recorded ``skipped``), ``"buffer_one"`` (waits for a
            free slot; fire times that come while one waits are skipped, or folded into
            it with ``coalesce``), ``"buffer_all"`` (each waits its turn, in order;
            never coalesced), ``"cancel_other"`` (cancels the runs in progress, then
            starts), ``"allow_all"`` (no limit: ``max_instances`` does not apply).
        on_crash: what becomes of a run whose scheduler died: ``"abandon"`` (recorded
            ``abandoned``, never rerun), ``"rerun"`` (recorded ``abandoned`` and run
            again, up to ``retry.attempts`` attempts or 3), ``None`` (as the retry
            policy's ``abandoned`` says).
        max_runs: the job is removed once this many runs of it have started.
        pause_after_failures: pause the job after this many fire times in a row failed
            (``error`` or ``timeout`` after their retries).
        next_run_time: the next fire time, or ``None`` while the job is paused.
        pause_note: why the job was paused (``pause_job(id, note=...)``), if it is.
        resumed_at: when :meth:`AsyncScheduler.resume_job` last resumed it
            (``pause_after_failures`` counts failures from then on).
    """

    def __attrs_post_init__(self) -> None:
        if self.overlap == "allow_all" and self.max_instances != 1:
            raise JobArgumentError(
                f"max_instances: {self.max_instances} does not apply with "
                "overlap='allow_all' (runs are not limited); give one or the other"
            )

    id: str = attrs.field(validator=_check_id)
    func: Callable[..., Any] = attrs.field(eq=False)
    func_ref: str | None = None
    trigger: Trigger
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    name: str = ""
    executor: str = "default"
    coalesce: bool = attrs.field(default=True, validator=_check_bool)
    max_instances: int = attrs.field(default=1, validator=_check_max_instances)
    misfire_grace_time: timedelta | None = _duration_option()
    jitter: timedelta | None = _duration_option()
    timeout: timedelta | None = _duration_option()
    retry: Retry | None = _retry_option()
    overlap: str = attrs.field(default="skip", validator=_choice(OVERLAP_POLICIES))
    on_crash: str | None = attrs.field(
        default=None, validator=_choice(CRASH_POLICIES, optional=True)
    )
    max_runs: int | None = attrs.field(default=None, validator=_check_optional_count)
    pause_after_failures: int | None = attrs.field(default=None, validator=_check_optional_count)
    next_run_time: datetime | None = attrs.field(default=None, validator=_check_aware_or_none)
    pause_note: str | None = attrs.field(default=None, validator=_check_optional_text)
    resumed_at: datetime | None = attrs.field(default=None, validator=_check_aware_or_none)
    metadata: Mapping[str, Any] = attrs.field(factory=dict)
    _scheduler: AsyncScheduler | None = attrs.field(
        default=None, eq=False, repr=False, alias="scheduler"
    )

    @property
    def paused(self) -> bool:
        """Whether the job is paused (it has no next run time)."""
        return self.next_run_time is None

    def _bound(self) -> AsyncScheduler:
        if self._scheduler is None:
            from horae.errors import HoraeError

            raise HoraeError(
                f"job {self.id!r} is not bound to a scheduler; "
                "use the scheduler's verbs (scheduler.pause_job(job.id), ...)"
            )
        return self._scheduler

    async def pause(self, *, note: str | None = None) -> Job:
        """Pause this job (see :meth:`AsyncScheduler.pause_job`)."""
        return await self._bound().pause_job(self.id, note=note)

    async def resume(self) -> Job:
        """Resume this job (see :meth:`AsyncScheduler.resume_job`)."""
        return await self._bound().resume_job(self.id)

    async def modify(self, **changes: Any) -> Job:
        """Change options of this job (see :meth:`AsyncScheduler.modify_job`)."""
        return await self._bound().modify_job(self.id, **changes)

    async def reschedule(self, trigger: Any, **trigger_args: Any) -> Job:
        """Give this job a new trigger (see :meth:`AsyncScheduler.reschedule_job`)."""
        return await self._bound().reschedule_job(self.id, trigger, **trigger_args)

    async def remove(self) -> None:
        """Remove this job (see :meth:`AsyncScheduler.remove_job`)."""
        await self._bound().remove_job(self.id)

    async def get_runs(self, limit: int = 100) -> list[Run]:
        """Recent runs of this job, newest first."""
        return await self._bound().get_runs(self.id, limit=limit)


@attrs.frozen(kw_only=True)
class Run:
    """One execution (or non-execution) of a job for one fire time.

    Attributes:
        id: unique id of this attempt (each retry or rerun is a run of its own; see
            :attr:`key` for an id of the fire time).
        job_id: the job's id.
        scheduled_time: the fire time this run is for.
        started_at: when the callable started (``None`` if it never did).
        finished_at: when the run ended (``None`` while it runs).
        outcome: how it ended, ``None`` while running.
        result: the callable's return value on success.
        error: the traceback text on error.
        scheduler_id: the scheduler that ran it.
        attempt: 1 for the first attempt.
        coalesced: how many earlier fire times this run covered (``coalesce=True``).
    """

    @property
    def key(self) -> uuid.UUID:
        """An id of this run's fire time, the same for every attempt and every process.

        ``id`` names one attempt (each retry or rerun is a run of its own); ``key``
        names the work: use it as an idempotency key when a run may be repeated after
        a crash (``on_crash="rerun"``, retries).
        """
        when = self.scheduled_time.astimezone(_UTC).isoformat()
        return uuid.uuid5(_KEY_NAMESPACE, f"{self.job_id}\x00{when}")

    id: uuid.UUID = attrs.field(factory=uuid.uuid4)
    job_id: str
    scheduled_time: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: RunOutcome | None = None
    result: Any = None
    error: str | None = None
    scheduler_id: str = ""
    attempt: int = 1
    coalesced: int = 0
