"""A web dashboard for a horae store: jobs, a 24-hour timeline, run history, schedulers.

Server-rendered HTML with a little inline JavaScript (no build step), on Starlette::

    from horae.dashboard import create_app

    app = create_app(PostgresStore("postgresql://app@db/app"))   # its own client scheduler
    app = create_app(scheduler)                                   # an AsyncScheduler you run

or from the command line: ``horae dashboard --store URL [--host 127.0.0.1 --port 8787]``.
Needs the ``dashboard`` extra (``pip install 'horae[dashboard]'``). See docs/dashboard.md.
"""

from __future__ import annotations

import contextlib
import hmac
import html
import json
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from horae._explain import explain_job
from horae._format import describe_trigger, duration, local_time, relative, when
from horae.errors import JobLookupError
from horae.events import Event, JobEvent, JobExecuted, RunEvent
from horae.jobs import Job, Run
from horae.scheduler import AsyncScheduler
from horae.stores import Store

__all__ = ["create_app", "is_loopback"]

logger = logging.getLogger(__name__)

#: How long a request waits for the dashboard's own scheduler to start before it shows
#: the "store unreachable" banner.
START_WAIT = 3.0
#: Seconds between two attempts to start the dashboard's scheduler on a store that is down.
RETRY_DELAY = 2.0
#: Fire times drawn per job on the timeline (a job firing every second would draw 86,400).
TIMELINE_CAP = 288
#: Runs shown on a job's page.
RUN_LIMIT = 100
#: Seconds between two keep-alive comments on the event stream.
KEEPALIVE = 15.0


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


def _e(value: object) -> str:
    """``value`` as HTML text (every ``&<>"'`` escaped)."""
    return html.escape(str(value), quote=True)


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
        # Schedulers seen through events: id -> (last event time, what it was).
        self.seen: dict[str, tuple[datetime, str]] = {}
        self.started_at = datetime.now(timezone.utc)

    def observe(self, event: Event) -> None:
        if event.origin:
            self.seen[event.origin] = (datetime.now(timezone.utc), type(event).__name__)

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
                    scheduler.add_listener(self.observe)
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


# ------------------------------------------------------------------------ rendering

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#fff;text-decoration:none}header a.on{font-weight:700;text-decoration:underline}
header .brand{font-weight:700;margin-right:1em}header .right{margin-left:auto;font-size:12px}
main{padding:1em 1.2em}table{border-collapse:collapse;background:#fff;width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#eaeef2;font-weight:600}td.num{text-align:right}small,.muted{color:#57606a}
.banner{padding:.6em 1em;margin:0 0 1em;border-radius:6px;border:1px solid}
.banner.error{background:#ffebe9;border-color:#ff8182}.banner.info{background:#ddf4ff;border-color:#54aeff}
.banner.warn{background:#fff8c5;border-color:#d4a72c}
.ok,.success{color:#1a7f37}.error,.failure,.timeout,.crashed,.abandoned{color:#cf222e}
.missed,.skipped,.cancelled{color:#9a6700}form.inline{display:inline;margin:0}
button{font:inherit;font-size:12px;padding:.15em .6em;cursor:pointer}
button.danger{color:#cf222e}pre{background:#fff;border:1px solid #d0d7de;padding:.6em;overflow:auto}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;background:#fff;padding:.6em;
border:1px solid #d0d7de}dt{font-weight:600}dd{margin:0}#live{font-size:12px}
svg{background:#fff;border:1px solid #d0d7de}
"""

_JS = """
(function(){
  const key = "horae-dashboard-token";
  const box = document.getElementById("token");
  if (box) {
    box.value = sessionStorage.getItem(key) || "";
    box.addEventListener("input", () => sessionStorage.setItem(key, box.value));
  }
  document.addEventListener("submit", (ev) => {
    const field = ev.target.querySelector("input[name=token]");
    if (field && box) field.value = box.value;
  });
  const live = document.getElementById("live");
  const url = document.body.dataset.events;
  if (!url || !window.EventSource) return;
  let timer = null;
  async function refresh() {
    timer = null;
    try {
      const res = await fetch(location.href, {headers: {"X-Horae-Fragment": "1"}});
      const text = await res.text();
      const doc = new DOMParser().parseFromString(text, "text/html");
      const fresh = doc.querySelector("main");
      if (fresh) document.querySelector("main").replaceWith(fresh);
    } catch (e) { /* the next event tries again */ }
  }
  const source = new EventSource(url);
  function show(text, cls) { live.textContent = text; live.className = cls; }
  source.addEventListener("open", () => show("live", "ok"));
  source.addEventListener("error", () => show("reconnecting", "error"));
  source.addEventListener("job", (ev) => {
    const data = JSON.parse(ev.data);
    const only = document.body.dataset.job;
    if (only && data.job_id !== only) return;
    if (!timer) timer = setTimeout(refresh, 250);
  });
})();
"""


class _Page:
    """What a page needs to render links and forms."""

    def __init__(self, request: Request, settings: _Settings) -> None:
        self.request = request
        self.settings = settings
        self.root = str(request.scope.get("root_path", "")).rstrip("/")

    def url(self, path: str) -> str:
        return self.root + path

    def action(self, path: str, label: str, *, danger: bool = False, back: str = "") -> str:
        """A one-button POST form (none in read-only mode)."""
        if self.settings.read_only:
            return ""
        cls = ' class="danger"' if danger else ""
        back_field = f'<input type="hidden" name="next" value="{_e(back)}">' if back else ""
        return (
            f'<form class="inline" method="post" action="{_e(self.url(path))}">'
            f'<input type="hidden" name="token" value="">{back_field}'
            f'<button type="submit"{cls}>{_e(label)}</button></form>'
        )


class _Settings:
    def __init__(self, token: str | None, read_only: bool, title: str) -> None:
        self.token = token
        self.read_only = read_only
        self.title = title


def _layout(
    page: _Page,
    title: str,
    body: str,
    *,
    active: str = "",
    status: int = 200,
    job_id: str | None = None,
) -> HTMLResponse:
    settings = page.settings
    notes = []
    if settings.read_only:
        notes.append('<div class="banner info">Read-only mode: actions are turned off.</div>')
    elif settings.token:
        notes.append(
            '<div class="banner info">Actions need the dashboard token '
            "(<code>--token</code> / <code>HORAE_DASHBOARD_TOKEN</code>): "
            'enter it here <input id="token" type="password" size="18" '
            'autocomplete="off" aria-label="token"></div>'
        )
    main = f"<main>{''.join(notes)}{body}</main>"
    if page.request.headers.get("x-horae-fragment"):
        return HTMLResponse(main, status_code=status)
    nav = "".join(
        f'<a href="{_e(page.url(path))}"{" class=on" if name == active else ""}>{label}</a>'
        for name, path, label in (
            ("jobs", "/", "Jobs"),
            ("timeline", "/timeline", "Timeline"),
            ("schedulers", "/schedulers", "Schedulers"),
        )
    )
    data_job = f' data-job="{_e(job_id)}"' if job_id else ""
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(title)} · {_e(settings.title)}</title><style>{_CSS}</style></head>"
        f'<body data-events="{_e(page.url("/events"))}"{data_job}>'
        f'<header><span class="brand">{_e(settings.title)}</span>{nav}'
        f'<span class="right"><span id="live" class="muted">connecting</span></span></header>'
        f"{main}<script>{_JS}</script></body></html>"
    )
    return HTMLResponse(document, status_code=status)


def _outcome(run: Run | None) -> str:
    if run is None:
        return '<span class="muted">never ran</span>'
    if run.outcome is None:
        return '<span class="running">running</span>'
    value = str(run.outcome.value if hasattr(run.outcome, "value") else run.outcome)
    return f'<span class="{_e(value)}">{_e(value)}</span>'


def _time_cell(moment: datetime | None, tz: tzinfo, now: datetime) -> str:
    if moment is None:
        return '<span class="muted">-</span>'
    return f"{_e(relative(moment, now))}<br><small>{_e(local_time(moment, tz))}</small>"


def _fire_times(job: Job, start: datetime, end: datetime) -> list[datetime]:
    """The job's fire times from its next run time up to ``end`` (at most TIMELINE_CAP)."""
    times: list[datetime] = []
    moment = job.next_run_time
    while moment is not None and moment <= end and len(times) < TIMELINE_CAP:
        if moment >= start:
            times.append(moment)
        try:
            moment = job.trigger.next(moment)
        except Exception:  # a third-party trigger's bug must not break the page
            break
    return times


def _timeline_svg(jobs: Sequence[Job], tz: tzinfo, now: datetime, hours: int = 24) -> str:
    end = now + timedelta(hours=hours)
    label_w, width, row_h = 180, 960, 22
    span = (end - now).total_seconds()
    rows = [(job, _fire_times(job, now, end)) for job in jobs if job.next_run_time is not None]
    height = 30 + row_h * max(len(rows), 1)
    parts = [
        f'<svg id="timeline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="fire times in the next 24 hours">'
    ]
    plot = width - label_w - 10
    for hour in range(hours + 1):
        x = label_w + plot * hour * 3600 / span
        tick = (now + timedelta(hours=hour)).astimezone(tz)
        parts.append(f'<line x1="{x:.1f}" y1="18" x2="{x:.1f}" y2="{height}" stroke="#eaeef2"/>')
        if hour % 3 == 0:
            parts.append(
                f'<text x="{x:.1f}" y="13" font-size="10" text-anchor="middle" fill="#57606a">'
                f"{tick:%H:%M}</text>"
            )
    if not rows:
        parts.append(f'<text x="{label_w}" y="44" fill="#57606a">No fire times.</text>')
    for index, (job, times) in enumerate(rows):
        y = 30 + row_h * index
        parts.append(
            f'<text x="6" y="{y + 14}" font-size="12"><title>{_e(job.id)}</title>'
            f"{_e(job.id[:26])}</text>"
        )
        for moment in times:
            x = label_w + plot * (moment - now).total_seconds() / span
            parts.append(
                f'<rect x="{x - 1:.1f}" y="{y + 3}" width="3" height="{row_h - 8}" fill="#0969da">'
                f"<title>{_e(job.id)}: {_e(local_time(moment, tz))}</title></rect>"
            )
        if len(times) >= TIMELINE_CAP:
            parts.append(
                f'<text x="{width - 8}" y="{y + 14}" font-size="10" text-anchor="end" '
                f'fill="#9a6700">first {TIMELINE_CAP}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


_COLOURS = {"success": "#1a7f37", "running": "#0969da"}


def _runs_chart(runs: Sequence[Run], tz: tzinfo) -> str:
    """An SVG of the finished runs' durations over time, coloured by outcome."""
    points = [
        (run.scheduled_time, (run.finished_at - run.started_at).total_seconds(), run)
        for run in runs
        if run.started_at is not None and run.finished_at is not None
    ]
    width, height, pad = 960, 200, 40
    if not points:
        return '<p class="muted">No finished runs to chart yet.</p>'
    first = min(p[0] for p in points)
    last = max(p[0] for p in points)
    span = max((last - first).total_seconds(), 1.0)
    top = max(max(p[1] for p in points), 0.001)
    parts = [
        f'<svg id="chart" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'role="img" aria-label="run durations and outcomes over time">',
        f'<text x="4" y="14" font-size="10" fill="#57606a">{_e(duration(timedelta(seconds=top)))}'
        "</text>",
        f'<text x="4" y="{height - 4}" font-size="10" fill="#57606a">'
        f"{_e(local_time(first, tz))}</text>",
        f'<text x="{width - 4}" y="{height - 4}" font-size="10" text-anchor="end" '
        f'fill="#57606a">{_e(local_time(last, tz))}</text>',
        f'<line x1="{pad}" y1="{height - pad + 10}" x2="{width - 10}" y2="{height - pad + 10}" '
        'stroke="#d0d7de"/>',
    ]
    for moment, seconds, run in points:
        x = pad + (width - pad - 20) * (moment - first).total_seconds() / span
        y = (height - pad + 10) - (height - pad - 10) * seconds / top
        outcome = str(run.outcome.value) if run.outcome is not None else "running"
        colour = _COLOURS.get(outcome, "#cf222e")
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"><title>'
            f"{_e(local_time(moment, tz))}: {_e(outcome)}, "
            f"{_e(duration(timedelta(seconds=seconds)))}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


# ------------------------------------------------------------------------ the app


def create_app(
    target: AsyncScheduler | Store,
    *,
    token: str | None = None,
    read_only: bool = False,
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
        title: the name in the page header.
    """
    settings = _Settings(token or None, read_only, title)
    backend = _Backend(target)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            if backend.own:
                tg.start_soon(backend.keep, name="horae dashboard scheduler")
            else:
                assert backend._scheduler is not None
                backend._scheduler.add_listener(backend.observe)
            try:
                yield
            finally:
                backend.stop.set()
                if not backend.own and backend._scheduler is not None:
                    backend._scheduler.remove_listener(backend.observe)

    def unavailable(page: _Page, error: BaseException, title: str) -> HTMLResponse:
        message = (
            str(error)
            if isinstance(error, StoreUnavailable)
            else f"{type(error).__name__}: {error}"
        )
        logger.warning("dashboard: store unreachable: %s", message, exc_info=error)
        body = (
            f'<div class="banner error" role="alert"><strong>store unreachable:</strong> '
            f"{_e(message)}<br><small>The page shows data again once the store answers; "
            "this page retries on the next reload.</small></div>"
        )
        return _layout(page, title, body, status=503)

    def not_found(page: _Page, job_id: str) -> HTMLResponse:
        body = (
            f"<h1>Not found</h1><p>No job has the id <code>{_e(job_id)}</code>. "
            f'<a href="{_e(page.url("/"))}">All jobs</a></p>'
        )
        return _layout(page, "not found", body, status=404)

    async def jobs_page(request: Request) -> Response:
        page = _Page(request, settings)
        try:
            scheduler = await backend.scheduler()
            jobs = await scheduler.get_jobs()
            last: dict[str, Run | None] = {}
            for job in jobs:
                runs = await scheduler.get_runs(job.id, limit=1)
                last[job.id] = runs[0] if runs else None
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
                    f'<a href="{_e(page.url(f"/jobs/{_quote(job.id)}/remove"))}">remove…</a>'
                )
            rows.append(
                f'<tr data-job="{_e(job.id)}"><td><a href="{_e(link)}">{_e(job.id)}</a>'
                + (f"<br><small>{_e(job.name)}</small>" if job.name and job.name != job.id else "")
                + f"</td><td><code>{_e(job.func_ref or repr(job.func))}</code></td>"
                f"<td>{_e(describe_trigger(job))}</td>"
                f"<td>{_time_cell(job.next_run_time, tz, now)}</td>"
                f'<td class="paused">{"paused" if paused else "no"}'
                + (f"<br><small>{_e(job.pause_note)}</small>" if job.pause_note else "")
                + f"</td><td>{_e(job.executor)}</td>"
                f'<td class="outcome">{_outcome(last[job.id])}</td>'
                f"<td>{' '.join(a for a in actions if a)}</td></tr>"
            )
        table = (
            "<table id=jobs><thead><tr><th>Job</th><th>Callable</th><th>Trigger</th>"
            "<th>Next run</th><th>Paused</th><th>Executor</th><th>Last outcome</th>"
            "<th>Actions</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
            if rows
            else '<p class="muted">No jobs in this store.</p>'
        )
        body = (
            f"<h1>Jobs <small>({len(jobs)})</small></h1>{table}"
            f"<p><small>{_e(_SHARE_NOTE)}</small></p>"
        )
        return _layout(page, "jobs", body, active="jobs")

    async def timeline_page(request: Request) -> Response:
        page = _Page(request, settings)
        try:
            scheduler = await backend.scheduler()
            jobs = await scheduler.get_jobs()
        except Exception as exc:
            return unavailable(page, exc, "timeline")
        now = datetime.now(timezone.utc)
        body = (
            "<h1>Next 24 hours</h1><p class=muted>Fire times of every job that is not "
            f"paused, from now ({_e(local_time(now, scheduler.timezone))}).</p>"
            + _timeline_svg(jobs, scheduler.timezone, now)
        )
        return _layout(page, "timeline", body, active="timeline")

    async def job_page(request: Request) -> Response:
        page = _Page(request, settings)
        job_id = request.path_params["job_id"]
        try:
            scheduler = await backend.scheduler()
            try:
                job = await scheduler.get_job(job_id)
            except JobLookupError:
                return not_found(page, job_id)
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
        paused = job.next_run_time is None
        quoted = _quote(job_id)
        actions = [
            page.action(f"/jobs/{quoted}/resume", "resume", back=f"/jobs/{quoted}")
            if paused
            else page.action(f"/jobs/{quoted}/pause", "pause", back=f"/jobs/{quoted}"),
            page.action(f"/jobs/{quoted}/run-now", "run now", back=f"/jobs/{quoted}"),
        ]
        if not settings.read_only:
            actions.append(f'<a href="{_e(page.url(f"/jobs/{quoted}/remove"))}">remove…</a>')
        fields = [
            ("callable", job.func_ref or repr(job.func)),
            ("trigger", describe_trigger(job)),
            ("next run", "paused" if paused else when(job.next_run_time, tz, now)),
            ("executor", job.executor),
            ("max instances", str(job.max_instances)),
            ("overlap", job.overlap),
        ]
        if job.pause_note:
            fields.append(("pause note", job.pause_note))
        details = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in fields)
        run_rows = []
        for run in runs:
            lateness = (
                duration(run.started_at - run.scheduled_time)
                if run.started_at is not None and run.started_at >= run.scheduled_time
                else "-"
            )
            took = (
                duration(run.finished_at - run.started_at)
                if run.started_at is not None and run.finished_at is not None
                else "-"
            )
            error = (run.error or "").strip()
            run_rows.append(
                f"<tr><td>{_outcome(run)}</td><td>{_time_cell(run.scheduled_time, tz, now)}</td>"
                f"<td>{_time_cell(run.started_at, tz, now)}</td><td class=num>{_e(lateness)}</td>"
                f"<td class=num>{_e(took)}</td><td class=num>{run.attempt}</td>"
                f"<td><small>{_e(run.scheduler_id)}</small></td>"
                + (
                    f"<td><details><summary>{_e(error.splitlines()[-1][:120])}</summary>"
                    f"<pre>{_e(error)}</pre></details></td>"
                    if error
                    else "<td></td>"
                )
                + "</tr>"
            )
        history = (
            "<table id=runs><thead><tr><th>Outcome</th><th>Scheduled</th><th>Started</th>"
            "<th>Late by</th><th>Took</th><th>Try</th><th>Scheduler</th><th>Error</th></tr>"
            "</thead><tbody>" + "".join(run_rows) + "</tbody></table>"
            if run_rows
            else '<p class="muted">No runs yet.</p>'
        )
        body = (
            f"<h1>Job <code>{_e(job.id)}</code> {' '.join(a for a in actions if a)}</h1>"
            f"<dl>{details}</dl><h2>Durations and outcomes</h2>{_runs_chart(runs, tz)}"
            f"<h2>Runs <small>(newest first, up to {RUN_LIMIT})</small></h2>{history}"
            f"<h2>Why it ran, or did not</h2><pre>{_e(explanation)}</pre>"
        )
        return _layout(page, job_id, body, active="jobs", job_id=job_id)

    async def remove_page(request: Request) -> Response:
        page = _Page(request, settings)
        job_id = request.path_params["job_id"]
        if settings.read_only:
            return _forbidden(page, "the dashboard is read-only")
        try:
            scheduler = await backend.scheduler()
            await scheduler.get_job(job_id)
        except JobLookupError:
            return not_found(page, job_id)
        except Exception as exc:
            return unavailable(page, exc, "remove")
        quoted = _quote(job_id)
        body = (
            f"<h1>Remove job <code>{_e(job_id)}</code>?</h1><p>The job and its schedule "
            "are deleted from the store; runs in progress finish. This cannot be undone.</p>"
            + page.action(f"/jobs/{quoted}/remove", "yes, remove it", danger=True, back="/")
            + f' <a href="{_e(page.url(f"/jobs/{quoted}"))}">cancel</a>'
        )
        return _layout(page, "remove", body, active="jobs")

    async def schedulers_page(request: Request) -> Response:
        page = _Page(request, settings)
        try:
            scheduler = await backend.scheduler()
            jobs = await scheduler.get_jobs()
            running: dict[str, list[Run]] = {}
            for job in jobs:
                for run in await scheduler.get_runs(job.id, limit=RUN_LIMIT):
                    if run.outcome is None and run.scheduler_id:
                        running.setdefault(run.scheduler_id, []).append(run)
        except Exception as exc:
            return unavailable(page, exc, "schedulers")
        now = datetime.now(timezone.utc)
        tz = scheduler.timezone
        ids = set(running) | set(backend.seen) | {scheduler.id}
        rows = []
        for sid in sorted(ids):
            seen = backend.seen.get(sid)
            held = running.get(sid, [])
            last = (
                f"{_time_cell(seen[0], tz, now)}<br><small>{_e(seen[1])}</small>"
                if seen
                else ("this dashboard" if sid == scheduler.id else '<span class="muted">-</span>')
            )
            rows.append(
                f"<tr><td><code>{_e(sid)}</code></td><td>{_e(_host_of(sid))}</td>"
                f"<td>{last}</td><td class=num>{len(held)}</td>"
                f"<td><small>{_e(', '.join(sorted({r.job_id for r in held})))}</small></td></tr>"
            )
        body = (
            "<h1>Schedulers sharing the store</h1>"
            '<div class="banner warn">The stores keep no register of schedulers and no '
            "heartbeats: this list is what the dashboard can tell from runs in progress "
            "(whose leases a scheduler holds) and from events received since the dashboard "
            f"started ({_e(when(backend.started_at, tz, now))}). {_e(_SHARE_NOTE)}</div>"
            "<table id=schedulers><thead><tr><th>Scheduler id</th><th>Host</th>"
            "<th>Last event seen</th><th>Runs in progress (leases held)</th><th>Jobs</th></tr>"
            "</thead><tbody>" + "".join(rows) + "</tbody></table>"
        )
        return _layout(page, "schedulers", body, active="schedulers")

    def _forbidden(page: _Page, why: str) -> HTMLResponse:
        body = f'<h1>Forbidden</h1><div class="banner error">{_e(why)}</div>'
        return _layout(page, "forbidden", body, status=403)

    async def act(request: Request) -> Response:
        page = _Page(request, settings)
        job_id, verb = request.path_params["job_id"], request.path_params["verb"]
        if verb not in _VERBS:
            return _layout(page, "not found", "<h1>Not found</h1>", status=404)
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
        try:
            scheduler = await backend.scheduler()
            if verb == "pause":
                await scheduler.pause_job(job_id, note=f"paused from the dashboard by {actor}")
            elif verb == "resume":
                await scheduler.resume_job(job_id)
            elif verb == "run-now":
                await scheduler.modify_job(job_id, next_run_time=datetime.now(timezone.utc))
            else:
                await scheduler.remove_job(job_id)
        except JobLookupError:
            return not_found(page, job_id)
        except Exception as exc:
            return unavailable(page, exc, verb)
        logger.info(
            "dashboard: %s: job %r (%s; event origin %s)", verb, job_id, actor, scheduler.id
        )
        back = form.get("next") or ""
        if not back.startswith("/") or back.startswith("//"):
            back = "/" if verb == "remove" else f"/jobs/{_quote(job_id)}"
        return RedirectResponse(page.url(back), status_code=303)

    async def events(request: Request) -> Response:
        try:
            scheduler = await backend.scheduler()
        except Exception as exc:
            return unavailable(_Page(request, settings), exc, "events")

        async def stream() -> AsyncIterator[str]:
            yield ": horae dashboard events\n\n"
            async with scheduler.subscribe(JobEvent) as subscription:
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
        page = _Page(request, settings)
        body = f'<h1>Not found</h1><p><a href="{_e(page.url("/"))}">All jobs</a></p>'
        return _layout(page, "not found", body, status=404)

    routes = [
        Route("/", jobs_page),
        Route("/timeline", timeline_page),
        Route("/schedulers", schedulers_page),
        Route("/events", events),
        Route("/jobs/{job_id:path}/remove", remove_page, methods=["GET"]),
        Route("/jobs/{job_id:path}/{verb}", act, methods=["POST"]),
        Route("/jobs/{job_id:path}", job_page),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: missing})
    app.state.horae_dashboard = backend
    return app


_VERBS = ("pause", "resume", "run-now", "remove")

_SHARE_NOTE = (
    "Runs and changes made by other processes show up live only if their schedulers run "
    "with share_events=True."
)


def _quote(job_id: str) -> str:
    return quote(job_id, safe="")


def _host_of(scheduler_id: str) -> str:
    """The host part of a default scheduler id (``host-pid-random``), else ``-``."""
    name = scheduler_id.removeprefix("dashboard@")
    parts = name.rsplit("-", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0]
    return "-"


def _cross_site(request: Request) -> bool:
    """Whether a browser sent this request from another site (CSRF)."""
    if request.headers.get("sec-fetch-site") == "cross-site":
        return True
    origin = request.headers.get("origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc != request.headers.get("host", "")
    return False


def _actor(request: Request) -> str:
    client = request.client
    who = f"{client.host}:{client.port}" if client is not None else "an unknown client"
    agent = request.headers.get("user-agent", "")
    return f"{who}" + (f" ({agent[:60]})" if agent else "")


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
