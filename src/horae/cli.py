"""The ``horae`` command line (also ``python -m horae``).

Commands::

    horae run --store URL [--import MODULE]... [--grace 30] [--log-level info]
    horae jobs list|show|add|pause|resume|remove|run-now --store URL ...
    horae runs JOB_ID --store URL [-n 20]
    horae explain JOB_ID --store URL [--limit 10]
    horae schedulers --store URL
    horae dashboard --store URL [--host 127.0.0.1] [--port 8787] [--token T] [--read-only]
    horae cron "EXPR" [--tz ZONE] [-n 10]

Store URLs: ``memory://``, ``sqlite:///relative.db``, ``sqlite:////absolute.db``,
``postgresql://user@host/db[?schema=name]``, ``redis://host:6379/0[?prefix=name]``;
``--store`` defaults to the ``HORAE_STORE`` environment variable.

Exit codes: 0 done; 1 a runtime failure (the store cannot be reached...); 2 bad input
(an unknown store scheme, a malformed cron expression, an unknown job id...), reported
as one line ``horae: error: ...`` on stderr, without a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib
import inspect
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup  # type: ignore[import-not-found, unused-ignore]

from horae import _cli_format as fmt
from horae._explain import explain_job
from horae._listing import job_ids, unreadable_jobs
from horae.errors import DeserializationError, HoraeError, StoreError
from horae.scheduler import AsyncScheduler
from horae.stores import MemoryStore, PostgresStore, RedisStore, SQLiteStore, Store

__all__ = ["main", "open_store"]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2

_STORE_HELP = (
    "memory://, sqlite:///path.db, postgresql://user@host/db[?schema=s], "
    "redis://host:6379/0[?prefix=p]"
)


class UsageError(Exception):
    """Bad input on the command line: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"horae: error: {message} (see '{self.prog} --help')\n")


# ------------------------------------------------------------------------ stores


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _pop_query(url: str, name: str) -> tuple[str, str | None]:
    """The URL without its ``name`` query parameter, and that parameter's value."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    values = [value for key, value in query if key == name]
    rest = [(key, value) for key, value in query if key != name]
    return urlunsplit(parts._replace(query=urlencode(rest))), (values[-1] if values else None)


def open_store(url: str) -> Store:
    """The store a ``--store`` URL names (not started).

    Raises:
        UsageError: the URL's scheme is unknown or the URL is malformed.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    shown = _redact(url)
    if not sep:
        raise UsageError(f"--store: {shown!r} is not a store URL; use {_STORE_HELP}")
    try:
        if scheme == "memory":
            if rest:
                raise UsageError(f"--store: {shown!r}: a memory store takes no path; use memory://")
            return MemoryStore()
        if scheme == "sqlite":
            if not rest.startswith("/") or len(rest) < 2:
                raise UsageError(
                    f"--store: {shown!r} names no file; use sqlite:///relative/path.db "
                    "or sqlite:////absolute/path.db"
                )
            return SQLiteStore(rest[1:])
        if scheme in ("postgresql", "postgres"):
            dsn, schema = _pop_query(url, "schema")
            return PostgresStore(dsn) if schema is None else PostgresStore(dsn, schema=schema)
        if scheme in ("redis", "rediss"):
            address, prefix = _pop_query(url, "prefix")
            return RedisStore(address) if prefix is None else RedisStore(address, prefix=prefix)
    except (ImportError, ValueError, TypeError) as exc:  # a missing extra, a bad option
        raise UsageError(f"--store {shown!r}: {exc}") from None
    raise UsageError(f"--store: {shown!r} has an unknown scheme {scheme!r}; use {_STORE_HELP}")


def _store_url(args: argparse.Namespace) -> str:
    url: str | None = args.store or os.environ.get("HORAE_STORE")
    if not url:
        raise UsageError(f"give --store URL (or set HORAE_STORE); URLs: {_STORE_HELP}")
    return url


async def _with_client(
    args: argparse.Namespace, action: Callable[[AsyncScheduler], Awaitable[int]]
) -> int:
    """Run ``action`` with a client scheduler (it manages jobs, runs none) on the store.

    It shares its events: the schedulers and dashboards on the store see the jobs this
    command adds or changes at once, with who did it (``actor``).
    """
    store = open_store(_store_url(args))
    async with AsyncScheduler(store, role="client", share_events=True) as scheduler:
        return await action(scheduler)


# ---------------------------------------------------------------------- commands


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=str, ensure_ascii=False, indent=2))


@contextlib.contextmanager
def _left_out_unlogged() -> Iterator[None]:
    """Keep the stores from logging the jobs get_jobs() leaves out: the listing names
    them itself, with what to do."""

    def keep(record: logging.LogRecord) -> bool:
        return not hasattr(record, "horae_left_out")

    loggers = [logging.getLogger(f"horae.stores.{name}") for name in _STORE_MODULES]
    for each in loggers:
        each.addFilter(keep)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(keep)


_STORE_MODULES = ("sqlite", "postgres", "redis")


async def _jobs_list(args: argparse.Namespace, scheduler: AsyncScheduler) -> int:
    # The ids first: a job added after them is in get_jobs(), so it is not taken for an
    # unreadable one.
    ids = await job_ids(scheduler.store)
    with _left_out_unlogged():
        jobs = await scheduler.get_jobs()
    unreadable = (
        [] if ids is None else await unreadable_jobs(scheduler.store, ids, {j.id for j in jobs})
    )
    if args.json:
        _print_json(
            [fmt.job_to_json(job) for job in jobs]
            + [fmt.unreadable_job_to_json(job) for job in unreadable]
        )
    else:
        print(fmt.jobs_table(jobs, scheduler.timezone, datetime.now(timezone.utc), unreadable))
    return EXIT_OK


async def _jobs_show(args: argparse.Namespace, scheduler: AsyncScheduler) -> int:
    job = await scheduler.get_job(args.job_id)
    if args.json:
        _print_json(fmt.job_to_json(job))
    else:
        print(fmt.job_details(job, scheduler.timezone, datetime.now(timezone.utc)))
    return EXIT_OK


def _json_option(name: str, text: str | None, kind: type) -> Any:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{name}: {text!r} is not JSON ({exc.msg})") from None
    if not isinstance(value, kind):
        what = "a JSON list, e.g. '[1, \"a\"]'" if kind is list else "a JSON object"
        raise UsageError(f"{name}: {text!r} is not {what}")
    return value


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``["hour=3", "day_of_week=mon-fri"]`` → ``{"hour": 3, "day_of_week": "mon-fri"}``.

    A value is read as JSON when it parses as JSON, else kept as the string.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(
                f"{item!r} is not a key=value trigger argument or job option "
                "(e.g. seconds=5, hour=3, day_of_week=mon-fri, max_instances=2)"
            )
        if key in result:
            raise UsageError(f"{key!r} is given twice")
        try:
            result[key] = json.loads(text)
        except json.JSONDecodeError:
            result[key] = text
    return result


_RESERVED = {"func": "FUNC", "trigger": "TRIGGER", "args": "--args", "kwargs": "--kwargs"}
_RESERVED |= {"id": "--id", "name": "--name", "replace_existing": "--replace"}


async def _jobs_add(args: argparse.Namespace, scheduler: AsyncScheduler) -> int:
    options = parse_assignments(args.assignments)
    for key, flag in _RESERVED.items():
        if key in options:
            raise UsageError(f"{key}=...: give it as {flag} instead")
    if "actor" in options:
        raise UsageError(
            "actor=...: the command names who adds the job itself (cli user@host) in the "
            "JobAdded event"
        )
    trigger: Any = None if args.trigger == "now" else args.trigger
    job = await scheduler.add_job(
        args.func,
        trigger,
        args=_json_option("--args", args.args, list),
        kwargs=_json_option("--kwargs", args.kwargs, dict),
        id=args.id,
        name=args.name,
        replace_existing=args.replace,
        actor=_actor(),
        **options,
    )
    now = datetime.now(timezone.utc)
    next_run = (
        "paused"
        if job.next_run_time is None
        else fmt.when(job.next_run_time, scheduler.timezone, now)
    )
    print(f"added job {job.id!r} ({fmt.describe_trigger(job)}); next run {next_run}")
    return EXIT_OK


def _actor() -> str:
    """Who runs this command, for the events of the jobs it changes."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in this environment
        user = "?"
    return f"cli {user}@{socket.gethostname()}"


async def _jobs_pause(args: argparse.Namespace, scheduler: AsyncScheduler) -> int:
    await scheduler.pause_job(args.job_id, note=args.note, actor=_actor())
    print(f"paused job {args.job_id!r}")
    return EXIT_OK


async def _jobs_resume(args: argparse.Namespace, scheduler: AsyncScheduler) -> int:
    job = await scheduler.resume_job(args.job_id, actor=_actor())
    now = datetime.now(timezone.utc)
    if job.next_run_time is None:
        print(f"job {args.job_id!r} had no fire time left and was removed")
    else:
        next_run = fmt.when(job.next_run_time, scheduler.timezone, now)
        print(f"resumed job {args.job_id!r}; next run {next_run}")
    return EXIT_OK


async def _jobs_remove(args: argparse.Namespace, scheduler: AsyncScheduler) -> int:
    await scheduler.remove_job(args.job_id, actor=_actor())
    print(f"removed job {args.job_id!r}")
    return EXIT_OK


async def _jobs_run_now(args: argparse.Namespace, scheduler: AsyncScheduler) -> int:
    await scheduler.modify_job(
        args.job_id, next_run_time=datetime.now(timezone.utc), actor=_actor()
    )
    print(f"job {args.job_id!r} is due now; a running 'horae run' process on this store runs it")
    return EXIT_OK


async def _runs(args: argparse.Namespace, scheduler: AsyncScheduler) -> int:
    runs = await scheduler.get_runs(args.job_id, limit=args.limit)
    if not runs:
        # JobLookupError for an unknown id; a job that cannot be read here exists.
        with contextlib.suppress(DeserializationError):
            await scheduler.get_job(args.job_id)
    if args.json:
        _print_json([fmt.run_to_json(run) for run in runs])
    elif not runs:
        print(f"job {args.job_id!r} has no runs yet")
    else:
        print(fmt.runs_table(runs, scheduler.timezone, datetime.now(timezone.utc)))
    return EXIT_OK


async def _explain(args: argparse.Namespace, scheduler: AsyncScheduler) -> int:
    explanation = await explain_job(
        scheduler.store,
        args.job_id,
        now=datetime.now(timezone.utc),
        timezone=scheduler.timezone,
        limit=args.limit,
    )
    if args.json:
        _print_json(explanation.to_dict())
    else:
        print(explanation)
    return EXIT_OK


async def _schedulers(args: argparse.Namespace, scheduler: AsyncScheduler) -> int:
    infos = await scheduler.get_schedulers()
    now = datetime.now(timezone.utc)
    if args.json:
        _print_json([fmt.scheduler_to_json(info, now) for info in infos])
    else:
        print(fmt.schedulers_table(infos, scheduler.timezone, now))
    return EXIT_OK


def _cron(args: argparse.Namespace) -> int:
    from horae.triggers import CronTrigger

    if args.count < 1:
        raise UsageError(f"-n: {args.count} is not a count; give 1 or more")
    trigger = CronTrigger.from_crontab(
        args.expr, timezone=args.tz, dst_gap=args.dst_gap, dst_repeated=args.dst_repeated
    )
    now = datetime.now(timezone.utc)
    after = now
    if args.after is not None:
        try:
            after = datetime.fromisoformat(args.after)
        except ValueError:
            raise UsageError(f"--after: {args.after!r} is not an ISO 8601 date-time") from None
        if after.tzinfo is None:
            after = after.replace(tzinfo=trigger.timezone)
    times: list[datetime] = []
    moment: datetime | None = after
    while len(times) < args.count and moment is not None:
        moment = trigger.next(moment)
        if moment is not None:
            times.append(moment.astimezone(trigger.timezone))
    if args.json:
        _print_json(
            {
                "expr": args.expr,
                "timezone": trigger.timezone.key,
                "description": trigger.describe(),
                "next": [moment.isoformat() for moment in times],
            }
        )
        return EXIT_OK
    print(f"{args.expr}\n  {trigger.describe()}\n")
    print(fmt.fire_times_table(times, now) if times else "It never fires again.")
    return EXIT_OK


# ------------------------------------------------------------------------ run


def _import_modules(names: Sequence[str]) -> list[Any]:
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except Exception as exc:  # user code: any error means "cannot import"
            detail = str(exc) or type(exc).__name__
            raise UsageError(
                f"--import {name}: cannot import it ({type(exc).__name__}: {detail})"
            ) from None
    return modules


async def _run(args: argparse.Namespace) -> int:
    if args.grace < 0:
        raise UsageError(f"--grace: {args.grace:g} is negative; give seconds >= 0")
    store = open_store(_store_url(args))
    modules = _import_modules(args.imports)
    scheduler = AsyncScheduler(store, scheduler_id=args.scheduler_id)
    # setup() runs before the scheduler starts, so it may use @scheduler.scheduled_job
    # as well as add_job (whose jobs are added once the scheduler starts).
    for module in modules:
        setup = getattr(module, "setup", None)
        if callable(setup):
            result = setup(scheduler)
            if inspect.isawaitable(result):
                await result
    logger.info("horae run: store %s, %d module(s) imported", _redact(args.store_url), len(modules))
    await scheduler.run_forever(grace=args.grace)
    return EXIT_OK


# ------------------------------------------------------------------ dashboard


def _dashboard(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from horae.dashboard import create_app, is_loopback
    except ImportError as exc:
        raise UsageError(
            f"dashboard: {exc.name or exc} is missing; install the extra: "
            "pip install 'horae[dashboard]'"
        ) from None
    if not 0 < args.port < 65536:
        raise UsageError(f"--port: {args.port} is not a TCP port")
    token = args.token or os.environ.get("HORAE_DASHBOARD_TOKEN") or None
    if token is None and not args.read_only and not is_loopback(args.host):
        raise UsageError(
            f"--host {args.host}: other machines could reach the dashboard; give --token "
            "(or set HORAE_DASHBOARD_TOKEN) for its actions, or --read-only"
        )
    store = open_store(_store_url(args))
    # On a loopback address, answer only requests naming a loopback host: a web page
    # cannot reach the dashboard by pointing a name of its own at 127.0.0.1.
    loopback = ["localhost", "127.0.0.1", "::1", "[::1]", args.host]
    app = create_app(
        store,
        token=token,
        read_only=args.read_only,
        allowed_hosts=loopback if is_loopback(args.host) else None,
    )
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        # The event streams stay open: do not wait for them on shutdown.
        timeout_graceful_shutdown=2,
    )
    logger.info(
        "horae dashboard: store %s on http://%s:%d/%s%s",
        _redact(args.store_url),
        args.host,
        args.port,
        " (read-only)" if args.read_only else "",
        " (actions need the token)" if token and not args.read_only else "",
    )
    # uvicorn stops gracefully on SIGTERM, then raises the signal again for the handler
    # it found: let that be a no-op, so that a SIGTERM ends the command with exit code 0.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.Server(config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    return EXIT_OK


# ---------------------------------------------------------------------- parser


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="horae",
        description="Run a horae scheduler, manage its jobs, explain why a job ran or not, "
        "explain cron expressions.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def store_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--store", metavar="URL", help=f"{_STORE_HELP} (default: $HORAE_STORE)")

    def json_option(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--json", action="store_true", help="print JSON for scripts")

    run = commands.add_parser("run", help="run a scheduler process until SIGTERM/SIGINT")
    store_option(run)
    run.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE (repeatable); its setup(scheduler) function, if any, is called "
        "before the scheduler starts",
    )
    run.add_argument(
        "--grace", type=float, default=30.0, help="seconds running jobs get after SIGTERM (30)"
    )
    run.add_argument("--scheduler-id", default=None, help="this process's scheduler id")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])

    jobs = commands.add_parser("jobs", help="manage the jobs in a store")
    verbs = jobs.add_subparsers(dest="verb", metavar="VERB")
    listing = verbs.add_parser("list", help="list the jobs")
    store_option(listing)
    json_option(listing)
    show = verbs.add_parser("show", help="show one job")
    store_option(show)
    json_option(show)
    show.add_argument("job_id", metavar="JOB_ID")
    add = verbs.add_parser(
        "add",
        help="add a job",
        description="Add a job, e.g.: horae jobs add --store sqlite:///j.db mymod:tick "
        "interval seconds=5 --id tick. Values are read as JSON when they parse, else as text.",
    )
    store_option(add)
    add.add_argument("func", metavar="FUNC", help="the callable, as module:function")
    add.add_argument(
        "trigger", metavar="TRIGGER", help="date, interval, cron, calendarinterval, or now"
    )
    add.add_argument(
        "assignments", nargs="*", metavar="KEY=VALUE", help="trigger arguments and job options"
    )
    add.add_argument("--id", default=None, help="the job's id (random by default)")
    add.add_argument("--name", default=None, help="a display name")
    add.add_argument(
        "--args", default=None, metavar="JSON", help="positional arguments, a JSON list"
    )
    add.add_argument(
        "--kwargs", default=None, metavar="JSON", help="keyword arguments, a JSON object"
    )
    add.add_argument("--replace", action="store_true", help="replace a job with the same id")
    for verb, text in (
        ("pause", "pause a job"),
        ("resume", "resume a paused job"),
        ("remove", "remove a job"),
        ("run-now", "make a job due now (a running scheduler process runs it)"),
    ):
        sub = verbs.add_parser(verb, help=text)
        store_option(sub)
        sub.add_argument("job_id", metavar="JOB_ID")
        if verb == "pause":
            sub.add_argument(
                "--note", default=None, help="why (shown by 'jobs show' and 'explain')"
            )

    runs = commands.add_parser("runs", help="show a job's recent runs")
    store_option(runs)
    json_option(runs)
    runs.add_argument("job_id", metavar="JOB_ID")
    runs.add_argument("-n", dest="limit", type=int, default=20, help="how many runs (20)")

    explain = commands.add_parser(
        "explain",
        help="why a job ran, or did not, at its last fire times",
        description="Why a job ran, or did not, at its last fire times (paused, missed, "
        "coalesced, skipped, waiting for a free slot, abandoned...), from its run history.",
    )
    store_option(explain)
    json_option(explain)
    explain.add_argument("job_id", metavar="JOB_ID")
    explain.add_argument(
        "-n",
        "--limit",
        dest="limit",
        type=int,
        default=10,
        metavar="N",
        help="how many fire times (10)",
    )

    schedulers = commands.add_parser(
        "schedulers",
        help="list the schedulers running on the store, with their last heartbeat",
        description="List the schedulers that run the store's jobs, as they report "
        "themselves (every third of their lease_duration): id, host, pid, state, start "
        "time, last heartbeat, whether they are still heard from, the job leases and "
        "runs they hold, their horae version. A scheduler silent for longer than its "
        "lease died or lost the store; its record is dropped a day later.",
    )
    store_option(schedulers)
    json_option(schedulers)

    dashboard = commands.add_parser(
        "dashboard",
        help="serve the web dashboard (needs the 'dashboard' extra)",
        description="Serve a web dashboard of the store: jobs, the next 24 hours, run "
        "history, schedulers; pause, resume, run now, remove. Runs and changes made by "
        "other processes show up live when their schedulers use share_events=True.",
    )
    store_option(dashboard)
    dashboard.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine)"
    )
    dashboard.add_argument("--port", type=int, default=8787, help="TCP port (8787)")
    dashboard.add_argument(
        "--token",
        default=None,
        help="actions need this token (default: $HORAE_DASHBOARD_TOKEN); required "
        "when --host is not a loopback address, unless --read-only",
    )
    dashboard.add_argument(
        "--read-only", action="store_true", help="show no actions and refuse them"
    )
    dashboard.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )

    cron = commands.add_parser(
        "cron", help="explain a crontab expression, list its next fire times"
    )
    cron.add_argument("expr", metavar="EXPR", help="e.g. '*/15 9-17 * * mon-fri'")
    cron.add_argument(
        "--tz", default=None, metavar="ZONE", help="IANA zone (default: the system's)"
    )
    cron.add_argument("-n", dest="count", type=int, default=10, help="how many fire times (10)")
    cron.add_argument(
        "--after", default=None, metavar="ISO", help="list fire times after this instant"
    )
    cron.add_argument(
        "--dst-gap",
        default="shift",
        choices=("shift", "skip"),
        help="a wall time missing on a DST change day: fire later (shift) or not (skip)",
    )
    cron.add_argument(
        "--dst-repeated",
        default="first",
        choices=("first", "both"),
        help="a wall time that occurs twice: fire at the first (first) or at both",
    )
    json_option(cron)
    return parser


_JOB_VERBS: dict[str, Callable[[argparse.Namespace, AsyncScheduler], Awaitable[int]]] = {
    "list": _jobs_list,
    "show": _jobs_show,
    "add": _jobs_add,
    "pause": _jobs_pause,
    "resume": _jobs_resume,
    "remove": _jobs_remove,
    "run-now": _jobs_run_now,
}


def _dispatch(parser: _Parser, args: argparse.Namespace) -> int:
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if args.command == "cron":
        return _cron(args)
    if args.command == "run":
        args.store_url = _store_url(args)
        return anyio.run(_run, args, backend="asyncio")
    if args.command == "dashboard":
        args.store_url = _store_url(args)
        return _dashboard(args)
    if args.command == "jobs" and args.verb is None:
        raise UsageError("jobs: give a verb: list, show, add, pause, resume, remove or run-now")
    if args.command == "explain" and args.limit < 1:
        raise UsageError(f"--limit: {args.limit} is not a count; give 1 or more")
    commands = {"runs": _runs, "explain": _explain, "schedulers": _schedulers}
    action = commands[args.command] if args.command in commands else _JOB_VERBS[args.verb]

    async def call(scheduler: AsyncScheduler) -> int:
        return await action(args, scheduler)

    return anyio.run(_with_client, args, call, backend="asyncio")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (``sys.argv[1:]`` by default); the exit code."""
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse leaves positionals that follow an option unparsed: "interval --id t
    # seconds=5" still means seconds=5.
    if getattr(args, "verb", None) == "add":
        args.assignments += [item for item in extra if not item.startswith("-")]
        extra = [item for item in extra if item.startswith("-")]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = getattr(args, "log_level", "warning").upper()
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Job callables and --import modules are found from the current directory, as with
    # ``python -m``.
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return _dispatch(parser, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        return _report(_unwrap(exc))


def _unwrap(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups of one; a task group's error."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _report(exc: BaseException) -> int:
    """Print ``exc`` as one line; its exit code: 2 for bad input, 1 for other failures."""
    if isinstance(exc, UsageError):
        return _fail(EXIT_USAGE, str(exc))
    if isinstance(exc, StoreError):
        return _fail(EXIT_FAILURE, str(exc))
    if isinstance(exc, HoraeError):
        return _fail(EXIT_USAGE, str(exc))
    # A store that cannot be reached, a server error...: the traceback under --log-level debug.
    logger.debug("horae failed", exc_info=exc)
    return _fail(EXIT_FAILURE, f"{type(exc).__name__}: {exc}")


def _fail(code: int, message: str) -> int:
    first = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"horae: error: {first}", file=sys.stderr)
    return code
