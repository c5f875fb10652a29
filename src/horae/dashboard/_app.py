"""The dashboard application: its routes, actions, event stream and the scheduler behind
them."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from horae._explain import explain_job
from horae._format import describe_trigger, local_time, when
from horae._listing import job_ids, reason, unreadable_jobs
from horae.dashboard._html import (
    Page,
    Settings,
    escape,
    layout,
    outcome_cell,
    runs_chart,
    runs_table,
    scheduler_row,
    time_cell,
    timeline_svg,
    unreadable_banner,
    unreadable_row,
)
from horae.errors import DeserializationError, JobLookupError
from horae.events import AllJobsRemoved, Event, JobEvent, JobExecuted, RunEvent
from horae.jobs import Job, Run
from horae.scheduler import AsyncScheduler
from horae.stores import SchedulerInfo, Store

logger = logging.getLogger(__name__)

#: How long a request waits for the dashboard's own scheduler to start before it shows
#: the "store unreachable" banner.
START_WAIT = 3.0
#: Seconds between two attempts to start the dashboard's scheduler on a store that is down.
RETRY_DELAY = 2.0
#: Runs shown on a job's page.
RUN_LIMIT = 100
#: Seconds between two keep-alive comments on the event stream.
KEEPALIVE = 15.0
#: The jobs page reads why a job cannot be read (one store call each) for up to this many
#: unreadable jobs; it lists the others by id.
UNREADABLE_LOOKUP_LIMIT = 50
#: The schedulers page lists the jobs of up to this many runs in progress.
IN_FLIGHT_LIMIT = 1000
#: Seconds between two reloads of the schedulers page (heartbeats send no event).
REFRESH = 10


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only accepts connections from this machine."""
    if host in ("localhost", "::1") or host.startswith("127."):
        return True
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(str(a).startswith("127.") or str(a) == "::1" for a in addresses)


class StoreUnavailable(Exception):
    """The store cannot be reached (or the dashboard's scheduler has not started on it)."""


# ------------------------------------------------------------------------ backend


class _Backend:
    """The scheduler the pages use: the caller's, or a client scheduler of our own."""

    def __init__(self, target: AsyncScheduler | Store) -> None:
        self.own = not isinstance(target, AsyncScheduler)
        self.store: Store = target.store if isinstance(target, AsyncScheduler) else target
        self._scheduler: AsyncScheduler | None = (
            target if isinstance(target, AsyncScheduler) else None
        )
        self.ready = anyio.Event()
        self.error: str | None = None
        self.stop = anyio.Event()

    async def keep(self) -> None:
        """Keep our own client scheduler running, starting it again when the store is back."""
        host = socket.gethostname()
        while not self.stop.is_set():
            scheduler = AsyncScheduler(
                self.store,
                role="client",
                share_events=True,
                scheduler_id=f"dashboard@{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}",
            )
            try:
                async with scheduler:
                    self._scheduler = scheduler
                    self.error = None
                    self.ready.set()
                    await self.stop.wait()
            except Exception as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                logger.warning("dashboard: cannot start on the store: %s", self.error)
            self._scheduler = None
            if self.ready.is_set():
                self.ready = anyio.Event()
            with anyio.move_on_after(RETRY_DELAY):
                await self.stop.wait()

    async def scheduler(self) -> AsyncScheduler:
        if self._scheduler is not None and self._scheduler.running:
            return self._scheduler
        if not self.own:
            raise StoreUnavailable("the scheduler given to the dashboard is not running")
        if self.error is None:  # still starting: wait a little; after a failure, do not
            with anyio.move_on_after(START_WAIT):
                await self.ready.wait()
        if self._scheduler is None:
            raise StoreUnavailable(self.error or "the dashboard could not start on the store")
        return self._scheduler


# ------------------------------------------------------------------------ the app


def create_app(
    target: AsyncScheduler | Store,
    *,
    token: str | None = None,
    read_only: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    title: str = "horae",
) -> Starlette:
    """The dashboard as an ASGI application (mount it anywhere, or serve it with uvicorn).

    Args:
        target: a started :class:`AsyncScheduler` (any role; the app uses it as is), or a
            store (the app then runs a client scheduler of its own on it, with
            ``share_events=True``, during its lifespan).
        token: when given, every action (pause, resume, run now, remove) needs it, in the
            ``token`` form field or the ``X-Horae-Token`` header; 403 without it. Pass
            one whenever the app can be reached from other machines.
        read_only: show no actions, and refuse them (403).
        allowed_hosts: answer only requests whose ``Host`` header is one of these names
            (400 otherwise), against DNS rebinding; every host by default. ``horae
            dashboard`` bound to a loopback address allows only loopback names.
        title: the name in the page header.
    """
    settings = Settings(token or None, read_only, title)
    backend = _Backend(target)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            if backend.own:
                tg.start_soon(backend.keep, name="horae dashboard scheduler")
            try:
                yield
            finally:
                backend.stop.set()

    def unavailable(page: Page, error: BaseException, title: str) -> HTMLResponse:
        message = (
            str(error)
            if isinstance(error, StoreUnavailable)
            else f"{type(error).__name__}: {error}"
        )
        logger.warning("dashboard: store unreachable: %s", message, exc_info=error)
        body = (
            f'<div class="banner error" role="alert"><strong>store unreachable:</strong> '
            f"{escape(message)}<br><small>The page shows data again once the store answers; "
            "this page retries on the next reload.</small></div>"
        )
        return layout(page, title, body, status=503)

    def not_found(page: Page, job_id: str) -> HTMLResponse:
        body = (
            f"<h1>Not found</h1><p>No job has the id <code>{escape(job_id)}</code>. "
            f'<a href="{escape(page.url("/"))}">All jobs</a></p>'
        )
        return layout(page, "not found", body, status=404)

    async def jobs_page(request: Request) -> Response:
        page = Page(request, settings)
        try:
            scheduler = await backend.scheduler()
            store = scheduler.store
            # The ids first: a job added after them is in get_jobs(), not "unreadable".
            ids = await job_ids(store)
            jobs = await scheduler.get_jobs()
            unreadable = (
                []
                if ids is None
                else await unreadable_jobs(
                    store, ids, {job.id for job in jobs}, limit=UNREADABLE_LOOKUP_LIMIT
                )
            )
            last = await _latest_runs(store, [job.id for job in jobs] + [u.id for u in unreadable])
            infos = await _registered(scheduler)
        except Exception as exc:
            return unavailable(page, exc, "jobs")
        tz, now = scheduler.timezone, datetime.now(timezone.utc)
        rows = []
        for job in jobs:
            paused = job.next_run_time is None
            link = page.url(f"/jobs/{_quote(job.id)}")
            actions = [
                page.action(f"/jobs/{_quote(job.id)}/resume", "resume", back="/")
                if paused
                else page.action(f"/jobs/{_quote(job.id)}/pause", "pause", back="/"),
                page.action(f"/jobs/{_quote(job.id)}/run-now", "run now", back="/"),
            ]
            if not settings.read_only:
                actions.append(
                    f'<a href="{escape(page.url(f"/jobs/{_quote(job.id)}/remove"))}">remove…</a>'
                )
            rows.append(
                f'<tr data-job="{escape(job.id)}"><td class=id>'
                f'<a href="{escape(link)}">{escape(job.id)}</a>'
                + (
                    f"<br><small>{escape(job.name)}</small>"
                    if job.name and job.name not in (job.id, _callable(job).rpartition(":")[2])
                    else ""
                )
                + f"</td><td><code>{escape(_callable(job))}</code></td>"
                f"<td>{escape(describe_trigger(job))}</td>"
                f"<td>{time_cell(job.next_run_time, tz, now)}</td>"
                f'<td class="paused">{"paused" if paused else "no"}'
                + (f"<br><small>{escape(job.pause_note)}</small>" if job.pause_note else "")
                + f"</td><td>{escape(job.executor)}</td>"
                f'<td class="outcome">{outcome_cell(last.get(job.id))}</td>'
                f"<td class=acts>{' '.join(a for a in actions if a)}</td></tr>"
            )
        rows += [unreadable_row(page, job, last.get(job.id)) for job in unreadable]
        table = (
            "<table id=jobs><thead><tr><th>Job</th><th>Callable</th><th>Trigger</th>"
            "<th>Next run</th><th>Paused</th><th>Executor</th><th>Last outcome</th>"
            "<th>Actions</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            if rows
            else '<p class="muted">No jobs in this store.</p>'
        )
        body = (
            f"<h1>Jobs <small>({len(jobs) + len(unreadable)})</small></h1>"
            f"{_runners(page, infos, now)}{unreadable_banner(unreadable)}{table}"
            f"<p><small>{escape(_SHARE_NOTE)}</small></p>"
        )
        return layout(page, "jobs", body, active="jobs")

    async def timeline_page(request: Request) -> Response:
        page = Page(request, settings)
        try:
            scheduler = await backend.scheduler()
            ids = await job_ids(scheduler.store)
            jobs = await scheduler.get_jobs()
        except Exception as exc:
            return unavailable(page, exc, "timeline")
        now = datetime.now(timezone.utc)
        # Counted, not read one by one: the jobs page says why each cannot be read.
        missing = len(ids) - len({job.id for job in jobs} & set(ids)) if ids is not None else 0
        note = (
            f'<p id=unreadable class="banner warn">{missing} job{"s" if missing != 1 else ""} '
            f"cannot be read here and {'are' if missing != 1 else 'is'} not drawn: see "
            f'<a href="{escape(page.url("/"))}">Jobs</a>.</p>'
            if missing
            else ""
        )
        body = (
            "<h1>Next 24 hours</h1><p class=muted>Fire times of every job that is not "
            f"paused, from now ({escape(local_time(now, scheduler.timezone))}).</p>"
            + note
            + timeline_svg(jobs, scheduler.timezone, now)
        )
        return layout(page, "timeline", body, active="timeline")

    async def job_page(request: Request) -> Response:
        page = Page(request, settings)
        job_id = request.path_params["job_id"]
        job: Job | None = None
        error: str | None = None
        try:
            scheduler = await backend.scheduler()
            try:
                job = await scheduler.get_job(job_id)
            except JobLookupError:
                return not_found(page, job_id)
            except DeserializationError as exc:
                error = reason(job_id, exc)  # its page still shows its runs, and remove
            runs = await scheduler.get_runs(job_id, limit=RUN_LIMIT)
            now = datetime.now(timezone.utc)
            try:
                explanation = str(
                    await explain_job(
                        scheduler.store, job_id, now=now, timezone=scheduler.timezone, limit=10
                    )
                )
            except JobLookupError:
                return not_found(page, job_id)
        except Exception as exc:
            return unavailable(page, exc, job_id)
        tz = scheduler.timezone
        quoted = _quote(job_id)
        remove = (
            ""
            if settings.read_only
            else f'<a href="{escape(page.url(f"/jobs/{quoted}/remove"))}">remove…</a>'
        )
        if job is None:
            actions = [remove]
            summary = (
                f'<div id=unreadable class="banner error"><strong>This job cannot be read '
                f"here:</strong> {escape(error)}<br><small>A scheduler where its callable "
                "imports still runs it; its runs below are readable. Pause, resume and run "
                "now need the job: start the dashboard where it imports, or remove it."
                "</small></div>"
            )
        else:
            paused = job.next_run_time is None
            actions = [
                page.action(f"/jobs/{quoted}/resume", "resume", back=f"/jobs/{quoted}")
                if paused
                else page.action(f"/jobs/{quoted}/pause", "pause", back=f"/jobs/{quoted}"),
                page.action(f"/jobs/{quoted}/run-now", "run now", back=f"/jobs/{quoted}"),
                remove,
            ]
            fields = [
                ("callable", _callable(job)),
                ("trigger", describe_trigger(job)),
                ("next run", "paused" if paused else when(job.next_run_time, tz, now)),
                ("executor", job.executor),
                ("max instances", str(job.max_instances)),
                ("overlap", job.overlap),
            ]
            if job.pause_note:
                fields.append(("pause note", job.pause_note))
            summary = (
                "<dl>"
                + "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in fields)
                + "</dl>"
            )
        body = (
            f"<h1>Job <code>{escape(job_id)}</code></h1>"
            f"<p class=actions>{' '.join(a for a in actions if a)}</p>"
            f"{summary}<h2>Durations and outcomes</h2>{runs_chart(runs, tz)}"
            f"<h2>Runs <small>(newest first, up to {RUN_LIMIT})</small></h2>"
            f"{runs_table(runs, tz, now)}"
            f"<h2>Why it ran, or did not</h2><pre>{escape(explanation)}</pre>"
        )
        return layout(page, job_id, body, active="jobs", job_id=job_id)

    async def remove_page(request: Request) -> Response:
        page = Page(request, settings)
        job_id = request.path_params["job_id"]
        if settings.read_only:
            return _forbidden(page, "the dashboard is read-only")
        try:
            scheduler = await backend.scheduler()
            await scheduler.get_job(job_id)
        except JobLookupError:
            return not_found(page, job_id)
        except DeserializationError:
            pass  # it exists, though it cannot be read here: removing it needs no reading
        except Exception as exc:
            return unavailable(page, exc, "remove")
        quoted = _quote(job_id)
        body = (
            f"<h1>Remove job <code>{escape(job_id)}</code>?</h1><p>The job and its schedule "
            "are deleted from the store; runs in progress finish. This cannot be undone.</p>"
            + page.action(f"/jobs/{quoted}/remove", "yes, remove it", danger=True, back="/")
            + f' <a href="{escape(page.url(f"/jobs/{quoted}"))}">cancel</a>'
        )
        return layout(page, "remove", body, active="jobs")

    async def schedulers_page(request: Request) -> Response:
        page = Page(request, settings)
        try:
            scheduler = await backend.scheduler()
            infos = await _registered(scheduler)
            in_flight: list[Run] | None = []
            stored: set[str] = set()
            if infos:
                # Every run in progress, one-off jobs' too (they leave the store as their
                # run starts): grouped by the scheduler that runs each.
                in_flight = await _runs_in_flight(scheduler.store)
                if in_flight:
                    ids = await job_ids(scheduler.store)
                    stored = set(ids) if ids is not None else {r.job_id for r in in_flight}
        except Exception as exc:
            return unavailable(page, exc, "schedulers")
        running: dict[str, list[Run]] = {}
        for run in in_flight or ():
            running.setdefault(run.scheduler_id, []).append(run)
        now = datetime.now(timezone.utc)
        if infos is None:
            body = (
                '<h1>Schedulers</h1><div class="banner warn">This store keeps no register '
                "of schedulers (it has no <code>get_schedulers</code> method: a store written "
                "for an older horae).</div>"
            )
            return layout(page, "schedulers", body, active="schedulers")
        rows = [
            scheduler_row(
                page,
                info,
                scheduler.timezone,
                now,
                None if in_flight is None else running.get(info.id, []),
                stored,
                this=info.id == scheduler.id,
            )
            # The living first: they run the jobs; the silent ones are history.
            for info in sorted(infos, key=lambda info: not info.alive(now))
        ]
        alive = sum(info.alive(now) for info in infos)
        table = (
            "<table id=schedulers><thead><tr><th>Scheduler</th><th>Host</th>"
            "<th class=num>PID</th><th>Status</th><th>Last heartbeat</th><th>Started</th>"
            "<th class=num>Job leases</th><th class=num>Runs</th><th>Jobs running</th>"
            "<th>Version</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            if rows
            else ""
        )
        scan_note = (
            f"<p><small>Jobs running: those of the first {IN_FLIGHT_LIMIT} runs in progress "
            "(by fire time).</small></p>"
            if in_flight is not None and len(in_flight) >= IN_FLIGHT_LIMIT
            else "<p><small>Jobs running: not listed, this store cannot list runs in progress "
            "(it has no <code>get_runs_in_flight</code> method: a store written for an older "
            "horae).</small></p>"
            if in_flight is None
            else ""
        )
        body = (
            f"<h1>Schedulers <small>({alive} alive)</small></h1>"
            f"{'' if alive else _runners(page, infos, now, link=False)}"
            f"{table}{scan_note}<p class=muted><small>{escape(_REGISTER_NOTE)}</small></p>"
        )
        return layout(page, "schedulers", body, active="schedulers", refresh=REFRESH)

    def _unreadable_refusal(
        page: Page, job_id: str, verb: str, exc: DeserializationError
    ) -> HTMLResponse:
        link = escape(page.url(f"/jobs/{_quote(job_id)}"))
        body = (
            f"<h1>Cannot {escape(verb.replace('-', ' '))} <code>{escape(job_id)}</code></h1>"
            f'<div class="banner error">The job cannot be read here: '
            f"{escape(reason(job_id, exc))}<br><small>Only removing it works without "
            f'reading it.</small></div><p><a href="{link}">Back to the job</a></p>'
        )
        return layout(page, verb, body, status=409, active="jobs")

    def _forbidden(page: Page, why: str) -> HTMLResponse:
        body = f'<h1>Forbidden</h1><div class="banner error">{escape(why)}</div>'
        return layout(page, "forbidden", body, status=403)

    async def act(request: Request) -> Response:
        page = Page(request, settings)
        job_id, verb = request.path_params["job_id"], request.path_params["verb"]
        if verb not in _VERBS:
            return layout(page, "not found", "<h1>Not found</h1>", status=404)
        if settings.read_only:
            return _forbidden(page, "the dashboard is read-only: actions are turned off")
        if _cross_site(request):
            return _forbidden(page, "a request from another site: refused")
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
        given = form.get("token") or request.headers.get("x-horae-token") or ""
        if settings.token is not None and not hmac.compare_digest(
            given.encode(), settings.token.encode()
        ):
            return _forbidden(
                page, "this action needs the dashboard token (--token / HORAE_DASHBOARD_TOKEN)"
            )
        actor = _actor(request)
        who = f"dashboard {actor}"  # in the JobModified / JobRemoved event
        try:
            scheduler = await backend.scheduler()
            if verb == "pause":
                await scheduler.pause_job(
                    job_id, note=f"paused from the dashboard by {actor}", actor=who
                )
            elif verb == "resume":
                await scheduler.resume_job(job_id, actor=who)
            elif verb == "run-now":
                await scheduler.modify_job(
                    job_id, next_run_time=datetime.now(timezone.utc), actor=who
                )
            else:
                await scheduler.remove_job(job_id, actor=who)
        except JobLookupError:
            return not_found(page, job_id)
        except DeserializationError as exc:
            return _unreadable_refusal(page, job_id, verb, exc)
        except Exception as exc:
            return unavailable(page, exc, verb)
        logger.info(
            "dashboard: %s job %r, asked by %s; event origin %s",
            verb,
            job_id,
            _client_details(request),
            scheduler.id,
        )
        back = form.get("next") or ""
        if not back.startswith("/") or back.startswith("//"):
            back = "/" if verb == "remove" else f"/jobs/{_quote(job_id)}"
        return RedirectResponse(page.url(back), status_code=303)

    async def events(request: Request) -> Response:
        try:
            scheduler = await backend.scheduler()
        except Exception as exc:
            return unavailable(Page(request, settings), exc, "events")

        async def stream() -> AsyncIterator[str]:
            yield ": horae dashboard events\n\n"
            async with scheduler.subscribe(JobEvent, AllJobsRemoved) as subscription:
                while True:
                    event: Event | None = None
                    with anyio.move_on_after(KEEPALIVE):
                        try:
                            event = await subscription.__anext__()
                        except StopAsyncIteration:  # the scheduler stopped
                            return
                    if event is None:
                        yield ": keep-alive\n\n"
                    else:
                        yield f"event: job\ndata: {json.dumps(_event_data(event))}\n\n"

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def missing(request: Request, exc: Exception) -> Response:
        page = Page(request, settings)
        body = f'<h1>Not found</h1><p><a href="{escape(page.url("/"))}">All jobs</a></p>'
        return layout(page, "not found", body, status=404)

    routes = [
        Route("/", jobs_page),
        Route("/timeline", timeline_page),
        Route("/schedulers", schedulers_page),
        Route("/events", events),
        Route("/jobs/{job_id:path}/remove", remove_page, methods=["GET"]),
        Route("/jobs/{job_id:path}/{verb}", act, methods=["POST"]),
        Route("/jobs/{job_id:path}", job_page),
    ]
    middleware = []
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: missing},
        middleware=middleware,
    )
    app.state.horae_dashboard = backend
    return app


_VERBS = ("pause", "resume", "run-now", "remove")

_REGISTER_NOTE = (
    "Every scheduler (not clients, such as this dashboard's own) writes its record when "
    "it starts, renews it every third of its lease_duration and removes it when it stops. "
    "One silent for longer than its lease died or lost the store: the others take over "
    "its jobs and its runs in progress; its record is dropped a day later. This page "
    f"reloads itself every {REFRESH} seconds."
)


async def _registered(scheduler: AsyncScheduler) -> list[SchedulerInfo] | None:
    """The store's register of schedulers; ``None`` for a store that keeps none."""
    if not callable(getattr(scheduler.store, "get_schedulers", None)):
        return None
    return await scheduler.get_schedulers()


async def _latest_runs(store: Store, job_ids: Sequence[str]) -> dict[str, Run]:
    """Each job's latest run (jobs that never ran are left out), in one store call."""
    if not job_ids:
        return {}
    if callable(getattr(store, "get_latest_runs", None)):
        return await store.get_latest_runs(job_ids)
    # A store written for an older horae: one call per job.
    latest: dict[str, Run] = {}
    for job_id in job_ids:
        runs = await store.get_runs(job_id, limit=1)
        if runs:
            latest[job_id] = runs[0]
    return latest


async def _runs_in_flight(store: Store) -> list[Run] | None:
    """The runs in progress of every job, removed ones' too (up to IN_FLIGHT_LIMIT);
    ``None`` for a store written for an older horae, which cannot list them."""
    if not callable(getattr(store, "get_runs_in_flight", None)):
        return None
    return await store.get_runs_in_flight(IN_FLIGHT_LIMIT)


def _runners(
    page: Page, infos: list[SchedulerInfo] | None, now: datetime, *, link: bool = True
) -> str:
    """How many schedulers run the store's jobs; a warning when none does."""
    if infos is None:
        return ""
    alive = sum(info.alive(now) for info in infos)
    href = escape(page.url("/schedulers"))
    if alive:
        label = f"{alive} scheduler{'s' if alive != 1 else ''} alive"
        return f'<p id=runners class=muted>Run by <a href="{href}">{label}</a>.</p>'
    silent = f" ({len(infos)} silent)" if infos else ""
    more = f' <a href="{href}">Schedulers</a>' if link else ""
    return (
        '<div id=runners class="banner warn"><strong>No scheduler is running on this '
        f"store</strong>{silent}: due jobs wait until one starts (<code>horae run --store "
        f"URL</code>, or a program with an <code>AsyncScheduler</code> on it).{more}</div>"
    )


_SHARE_NOTE = (
    "Runs and changes made by other processes show up live only if their schedulers run "
    "with share_events=True."
)


def _quote(job_id: str) -> str:
    return quote(job_id, safe="")


def _callable(job: Job) -> str:
    """``module:qualname`` of the job's callable (its reference, when it has one)."""
    if job.func_ref:
        return job.func_ref
    module = getattr(job.func, "__module__", None)
    name = getattr(job.func, "__qualname__", None)
    return f"{module}:{name}" if module and name else repr(job.func)


def _cross_site(request: Request) -> bool:
    """Whether a browser sent this request from another site (CSRF)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc != request.headers.get("host", "")
    return False


def _actor(request: Request) -> str:
    """Who asked, for the pause note: the client's address."""
    return request.client.host if request.client is not None else "an unknown client"


def _client_details(request: Request) -> str:
    """Who asked, for the log: address, port and user agent."""
    client = request.client
    who = f"{client.host}:{client.port}" if client is not None else "an unknown client"
    agent = request.headers.get("user-agent", "")
    return who + (f", {agent[:120]!r}" if agent else "")


def _event_data(event: Event) -> Mapping[str, Any]:
    data: dict[str, Any] = {
        "type": type(event).__name__,
        "origin": event.origin,
        "timestamp": event.timestamp.isoformat(),
    }
    if isinstance(event, JobEvent):
        data["job_id"] = event.job_id
    if isinstance(event, RunEvent):
        data["run_id"] = str(event.run_id)
        data["scheduled_time"] = event.scheduled_time.isoformat()
    if isinstance(event, JobExecuted):
        data["outcome"] = "success"
    return data
