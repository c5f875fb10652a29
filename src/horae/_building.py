"""Turning ``add_job`` arguments into a validated :class:`~horae.Job`.

Every check here runs when the user calls ``add_job`` (or ``modify_job``), so that a
mistake is reported by the call that made it, never later when the job fires.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any

from horae._time import to_aware
from horae.errors import (
    ExecutorLookupError,
    InvalidCallableError,
    JobArgumentError,
    TriggerError,
)
from horae.executors.base import Executor
from horae.jobs import Job, JobDefaults
from horae.refs import ref_to_callable
from horae.triggers.base import Trigger, create_trigger
from horae.triggers.date import DateTrigger
from horae.triggers.interval import IntervalTrigger


class _Unset:
    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


#: Marks an ``add_job`` option the caller did not give (``None`` is a meaningful value).
UNSET: Any = _Unset()

_ONE_MICROSECOND = timedelta(microseconds=1)


def resolve_callable(func: Callable[..., Any] | str) -> tuple[Callable[..., Any], str | None]:
    """The callable and, when ``func`` was given as one, its reference string."""
    if isinstance(func, str):
        return ref_to_callable(func), func
    if not callable(func):
        raise InvalidCallableError(
            f"func: {func!r} is not callable; give a function, a coroutine function or a "
            "'package.module:function' reference"
        )
    return func, None


def is_async_callable(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` gives a coroutine (looking through partials)."""
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004  (callable instances)
    return call is not None and not inspect.isfunction(func) and inspect.iscoroutinefunction(call)


def choose_executor(
    func: Callable[..., Any], name: str | None, executors: Mapping[str, Executor]
) -> str:
    """The executor name for ``func``: the given one, else by what kind of callable it is."""
    if name is None:
        if is_async_callable(func):
            name = "async"
        else:
            name = "default" if "default" in executors else "thread"
    executor = executors.get(name)
    if executor is None:
        raise ExecutorLookupError(name, sorted(executors))
    executor.check(func)
    return name


def build_trigger(
    trigger: Trigger | str | None,
    trigger_args: Mapping[str, Any],
    timezone: tzinfo,
    now: datetime,
) -> Trigger:
    """A trigger from an alias and arguments, an instance, or nothing (run once, now)."""
    if trigger is None:
        if trigger_args:
            names = ", ".join(sorted(trigger_args))
            raise TriggerError(
                next(iter(sorted(trigger_args))),
                f"add_job() got trigger arguments ({names}) but no trigger; "
                "name one, e.g. add_job(func, 'interval', seconds=5)",
            )
        return DateTrigger(run_date=now, timezone=timezone)
    if isinstance(trigger, str):
        args = dict(trigger_args)
        if trigger == "interval" and args.get("start_date") is None:
            # The first run comes one interval after the job is added (APScheduler 3's
            # rule), on the scheduler's clock rather than the system's.
            args["start_date"] = now
            built = create_trigger(trigger, args, default_timezone=timezone)
            first = built.next(now)
            if first is None:
                return built
            if isinstance(built, IntervalTrigger):
                # Validated once already; only the start moves (add_job's hot path).
                return built.starting_at(first)
            args["start_date"] = first
        return create_trigger(trigger, args, default_timezone=timezone)
    if trigger_args:
        names = ", ".join(sorted(trigger_args))
        raise TriggerError(
            next(iter(sorted(trigger_args))),
            f"add_job() got a trigger instance and trigger arguments ({names}); "
            "put the arguments in the trigger",
        )
    if not callable(getattr(trigger, "next", None)) or not callable(
        getattr(trigger, "to_dict", None)
    ):
        raise TriggerError(
            "trigger",
            f"trigger: {trigger!r} is not a trigger; give an alias ('date', 'interval', "
            "'calendarinterval', 'cron') or a trigger instance",
        )
    return trigger


def first_fire_time(trigger: Trigger, now: datetime) -> datetime | None:
    """The first fire time at or after ``now``.

    A date trigger whose date has passed still fires once (late, so the misfire rules
    decide whether it runs or is reported missed): nothing the user scheduled is
    dropped without a trace.
    """
    first = trigger.next(now - _ONE_MICROSECOND)
    if first is None and isinstance(trigger, DateTrigger):
        return trigger.run_date
    return first


#: The options of ``add_job`` besides the callable, the trigger and its arguments.
JOB_OPTIONS = frozenset(
    {
        "args",
        "kwargs",
        "id",
        "name",
        "executor",
        "coalesce",
        "max_instances",
        "misfire_grace_time",
        "jitter",
        "timeout",
        "retry",
        "overlap",
        "on_crash",
        "max_runs",
        "pause_after_failures",
        "next_run_time",
        "metadata",
    }
)


def build_job(
    func: Callable[..., Any] | str,
    trigger: Trigger | str | None,
    options: Mapping[str, Any],
    trigger_args: Mapping[str, Any],
    *,
    defaults: JobDefaults,
    executors: Mapping[str, Executor],
    timezone: tzinfo,
    now: datetime,
) -> Job:
    """Validate everything ``add_job`` was given and build the job.

    ``options`` holds the :data:`JOB_OPTIONS` the caller gave; an option that is absent
    or :data:`UNSET` takes its value from ``defaults``.
    """
    target, ref = resolve_callable(func)
    executor_name = choose_executor(target, options.get("executor"), executors)
    built_trigger = build_trigger(trigger, trigger_args, timezone, now)
    args = options.get("args")
    kwargs = options.get("kwargs")
    if args is not None and (isinstance(args, (str, bytes)) or not isinstance(args, Sequence)):
        raise JobArgumentError(f"args: {args!r} is not a list or tuple of positional arguments")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        raise JobArgumentError(f"kwargs: {kwargs!r} is not a mapping of keyword arguments")
    check_arguments(target, args or (), kwargs or {})
    next_run_time = options.get("next_run_time", UNSET)
    if next_run_time is UNSET:
        first = first_fire_time(built_trigger, now)
        if first is None:
            raise TriggerError(
                "trigger",
                f"trigger: {built_trigger!r} has no fire time after {now.isoformat()}; "
                "the job would never run",
            )
    elif next_run_time is None:
        first = None  # added paused
    else:
        first = to_aware(next_run_time, timezone, "next_run_time")

    def option(name: str) -> Any:
        value = options.get(name, UNSET)
        return getattr(defaults, name) if value is UNSET else value

    job_id = options.get("id")
    name = options.get("name")
    return Job(
        id=uuid.uuid4().hex if job_id is None else job_id,
        func=target,
        func_ref=ref,
        trigger=built_trigger,
        args=tuple(args or ()),
        kwargs=dict(kwargs or {}),
        name=name if name is not None else _default_name(target),
        executor=executor_name,
        coalesce=option("coalesce"),
        max_instances=option("max_instances"),
        misfire_grace_time=option("misfire_grace_time"),
        jitter=option("jitter"),
        timeout=option("timeout"),
        retry=option("retry"),
        overlap=option("overlap"),
        on_crash=option("on_crash"),
        max_runs=options.get("max_runs"),
        pause_after_failures=option("pause_after_failures"),
        next_run_time=first,
        metadata=dict(options.get("metadata") or {}),
    )


@functools.lru_cache(maxsize=1024)
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    # inspect.signature costs more than the rest of add_job; most jobs share a callable.
    return inspect.signature(func)


def check_arguments(
    func: Callable[..., Any], args: Sequence[Any], kwargs: Mapping[str, Any]
) -> None:
    """Refuse now the arguments ``func`` could not be called with (APScheduler 3 does too).

    Raises:
        JobArgumentError: the arguments do not fit the callable's signature.
    """
    try:
        signature = _signature(func)
    except (TypeError, ValueError):
        return  # some builtins have no signature to check against
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        name = getattr(func, "__qualname__", repr(func))
        raise JobArgumentError(
            f"args/kwargs: {name}{signature} cannot be called with args={list(args)!r}, "
            f"kwargs={dict(kwargs)!r}: {exc}"
        ) from None


def _default_name(func: Callable[..., Any]) -> str:
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__qualname__", None) or repr(func)


#: Options ``modify_job`` may change: every ``add_job`` option but the id, plus the callable
#: and the trigger.
MODIFIABLE = (JOB_OPTIONS - {"id"}) | {"func", "trigger"}
