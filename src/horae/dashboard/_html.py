"""The dashboard's HTML: the page layout, its CSS and JavaScript, tables' cells, and the
SVG timeline and chart. Every value goes through :func:`escape`."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Container, Sequence
from datetime import datetime, timedelta, tzinfo
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse

from horae._format import duration, local_time, relative
from horae._listing import UnreadableJob
from horae.jobs import Job, Run
from horae.stores.base import SchedulerInfo

#: Fire times drawn per job on the timeline (a job firing every second would draw 86,400).
TIMELINE_CAP = 288


def escape(value: object) -> str:
    """``value`` as HTML text (every ``&<>"'`` escaped)."""
    return html.escape(str(value), quote=True)


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
header{background:#24292f;color:#fff;padding:.6em 1.2em;display:flex;gap:1.2em;align-items:center}
header a{color:#fff;text-decoration:none}header a.on{font-weight:700;text-decoration:underline}
header .brand{font-weight:700;margin-right:1em}header .right{margin-left:auto;font-size:12px}
main{padding:1em 1.2em}.notes{padding:1em 1.2em 0}
table{border-collapse:collapse;background:#fff;width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#eaeef2;font-weight:600}td.num{text-align:right}td.acts,td.id,.when{white-space:nowrap}small,.muted{color:#57606a}
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
tr.silent td,tr.unreadable td{background:#fff5f5}.state{font-weight:600}
.paused-state,.stopping{color:#9a6700}
td.jobs a{margin-right:.5em}.tag{font-size:11px;border:1px solid #d0d7de;border-radius:8px;
padding:0 .4em;color:#57606a}
"""

JS = """
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
  const every = Number(document.body.dataset.refresh || 0);
  if (every > 0) setInterval(() => {
    if (!timer && !document.hidden) timer = setTimeout(refresh, 0);
  }, every * 1000);
  const source = new EventSource(url);
  function show(text, cls) { live.textContent = text; live.className = cls; }
  source.addEventListener("open", () => show("live", "ok"));
  source.addEventListener("error", () => show("reconnecting", "error"));
  source.addEventListener("job", (ev) => {
    const data = JSON.parse(ev.data);
    const only = document.body.dataset.job;
    if (only && data.job_id && data.job_id !== only) return;
    if (!timer) timer = setTimeout(refresh, 250);
  });
})();
"""


class Page:
    """What a page needs to render links and forms."""

    def __init__(self, request: Request, settings: Settings) -> None:
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
        back_field = f'<input type="hidden" name="next" value="{escape(back)}">' if back else ""
        return (
            f'<form class="inline" method="post" action="{escape(self.url(path))}">'
            f'<input type="hidden" name="token" value="">{back_field}'
            f'<button type="submit"{cls}>{escape(label)}</button></form>'
        )


class Settings:
    def __init__(self, token: str | None, read_only: bool, title: str) -> None:
        self.token = token
        self.read_only = read_only
        self.title = title


def layout(
    page: Page,
    title: str,
    body: str,
    *,
    active: str = "",
    status: int = 200,
    job_id: str | None = None,
    refresh: int | None = None,
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
    # Outside <main>, which live updates replace: the token box keeps what was typed.
    notes_html = f'<div class="notes">{"".join(notes)}</div>' if notes else ""
    main = f"<main>{body}</main>"
    if page.request.headers.get("x-horae-fragment"):
        return HTMLResponse(main, status_code=status)
    nav = "".join(
        f'<a href="{escape(page.url(path))}"{" class=on" if name == active else ""}>{label}</a>'
        for name, path, label in (
            ("jobs", "/", "Jobs"),
            ("timeline", "/timeline", "Timeline"),
            ("schedulers", "/schedulers", "Schedulers"),
        )
    )
    data_job = f' data-job="{escape(job_id)}"' if job_id else ""
    if refresh:
        data_job += f' data-refresh="{int(refresh)}"'
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} · {escape(settings.title)}</title><style>{CSS}</style></head>"
        f'<body data-events="{escape(page.url("/events"))}"{data_job}>'
        f'<header><span class="brand">{escape(settings.title)}</span>{nav}'
        f'<span class="right"><span id="live" class="muted">connecting</span></span></header>'
        f"{notes_html}{main}<script>{JS}</script></body></html>"
    )
    return HTMLResponse(document, status_code=status)


def outcome_cell(run: Run | None) -> str:
    if run is None:
        return '<span class="muted">never ran</span>'
    if run.outcome is None:
        return '<span class="running">running</span>'
    value = str(run.outcome.value if hasattr(run.outcome, "value") else run.outcome)
    return f'<span class="{escape(value)}">{escape(value)}</span>'


def scheduler_row(
    page: Page,
    info: SchedulerInfo,
    tz: tzinfo,
    now: datetime,
    runs: Sequence[Run] | None,
    stored: Container[str],
    *,
    this: bool = False,
) -> str:
    """A row of the schedulers page: a scheduler's record, marked when it went silent.

    ``runs`` holds its runs in progress (``None``: the store cannot list them); the job
    of each is linked when its id is in ``stored`` (the store's job ids), else marked as
    gone (a one-off job leaves the store while its run goes on).
    """
    alive = info.alive(now)
    if not alive:
        silent = max(int((now - info.heartbeat_at).total_seconds()), 0)
        status = (
            '<strong class="error">presumed dead</strong><br>'
            f"<small>silent for {escape(duration(timedelta(seconds=silent)))}; last state: "
            f"{escape(info.state)}</small>"
        )
    else:
        cls = {"running": "ok", "paused": "paused-state"}.get(info.state, "stopping")
        status = f'<span class="state {cls}">{escape(info.state)}</span>'
    if runs is None:
        running = '<span class="muted">-</span>'
    else:
        counts = Counter(run.job_id for run in runs)
        cells = []
        for job_id in sorted(counts):
            times = f" <small>×{counts[job_id]}</small>" if counts[job_id] > 1 else ""
            if job_id in stored:
                href = escape(page.url("/jobs/" + quote(job_id, safe="")))
                cells.append(f'<a href="{href}">{escape(job_id)}</a>{times}')
            else:
                cells.append(
                    '<span title="no longer in the store: removed while this run goes on '
                    f'(a one-off job leaves the store as its run starts)">{escape(job_id)}'
                    f"</span>{times} <small>(removed)</small>"
                )
        running = " ".join(cells)
    tag = ' <span class="tag">this process</span>' if this else ""
    return (
        f'<tr data-scheduler="{escape(info.id)}"{"" if alive else " class=silent"}>'
        f"<td class=id><code>{escape(info.id)}</code>{tag}</td>"
        f"<td>{escape(info.host)}</td><td class=num>{info.pid}</td>"
        f'<td class="status">{status}</td>'
        f"<td>{time_cell(info.heartbeat_at, tz, now)}</td>"
        f"<td>{time_cell(info.started_at, tz, now)}</td>"
        f"<td class=num>{info.job_leases}</td><td class=num>{info.run_leases}</td>"
        f"<td class=jobs>{running}</td>"
        f"<td>{escape(info.version or '-')}</td></tr>"
    )


def runs_table(runs: Sequence[Run], tz: tzinfo, now: datetime) -> str:
    """A job's runs, newest first: outcome, times, lateness, duration, attempt, error."""
    rows = []
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
        rows.append(
            f"<tr><td>{outcome_cell(run)}</td><td>{time_cell(run.scheduled_time, tz, now)}</td>"
            f"<td>{time_cell(run.started_at, tz, now)}</td>"
            f"<td class=num>{escape(lateness)}</td>"
            f"<td class=num>{escape(took)}</td><td class=num>{run.attempt}</td>"
            f"<td><small>{escape(run.scheduler_id)}</small></td>"
            + (
                f"<td><details><summary>{escape(error.splitlines()[-1][:120])}</summary>"
                f"<pre>{escape(error)}</pre></details></td>"
                if error
                else "<td></td>"
            )
            + "</tr>"
        )
    if not rows:
        return '<p class="muted">No runs yet.</p>'
    return (
        "<table id=runs><thead><tr><th>Outcome</th><th>Scheduled</th><th>Started</th>"
        "<th>Late by</th><th>Took</th><th>Try</th><th>Scheduler</th><th>Error</th></tr>"
        "</thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def unreadable_banner(unreadable: Sequence[UnreadableJob]) -> str:
    """Why some jobs show no details, and what to do."""
    if not unreadable:
        return ""
    count = len(unreadable)
    script = any("'__main__:" in (job.error or "") for job in unreadable)
    return (
        f'<div id=unreadable class="banner warn"><strong>{count} job'
        f"{'s' if count != 1 else ''} cannot be read here</strong> (listed last), most "
        "often because a callable does not import in the dashboard's process. A scheduler "
        "where it imports still runs the job. Start the dashboard where your job modules "
        "import (<code>PYTHONPATH</code>), or remove the job."
        + (
            " A function of the script that added a job (<code>__main__:…</code>) imports "
            "only in that script's process: give jobs functions of importable modules."
            if script
            else ""
        )
        + "</div>"
    )


def unreadable_row(page: Page, job: UnreadableJob, last: Run | None) -> str:
    """A row of the jobs table for a job that cannot be read here: its id, why, its last
    outcome (the runs can be read) and the one action that needs no reading: remove."""
    quoted = quote(job.id, safe="")
    why = (
        escape(job.error)
        if job.error is not None
        else "not looked up (too many such jobs to read on each page load): see its page"
    )
    remove = (
        ""
        if page.settings.read_only
        else f'<a href="{escape(page.url(f"/jobs/{quoted}/remove"))}">remove…</a>'
    )
    return (
        f'<tr data-job="{escape(job.id)}" class=unreadable><td class=id>'
        f'<a href="{escape(page.url(f"/jobs/{quoted}"))}">{escape(job.id)}</a></td>'
        f'<td colspan=5><strong class="error">cannot be read here:</strong> {why}</td>'
        f'<td class="outcome">{outcome_cell(last)}</td><td class=acts>{remove}</td></tr>'
    )


def time_cell(moment: datetime | None, tz: tzinfo, now: datetime) -> str:
    if moment is None:
        return '<span class="muted">-</span>'
    return (
        f'<span class="when">{escape(relative(moment, now))}<br>'
        f"<small>{escape(local_time(moment, tz))}</small></span>"
    )


def fire_times(job: Job, start: datetime, end: datetime) -> list[datetime]:
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


def timeline_svg(jobs: Sequence[Job], tz: tzinfo, now: datetime, hours: int = 24) -> str:
    end = now + timedelta(hours=hours)
    label_w, width, row_h = 180, 960, 22
    span = (end - now).total_seconds()
    rows = [(job, fire_times(job, now, end)) for job in jobs if job.next_run_time is not None]
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
            anchor = "end" if hour == hours else "middle"
            parts.append(
                f'<text x="{x:.1f}" y="13" font-size="10" text-anchor="{anchor}" fill="#57606a">'
                f"{tick:%H:%M}</text>"
            )
    if not rows:
        parts.append(f'<text x="{label_w}" y="44" fill="#57606a">No fire times.</text>')
    for index, (job, times) in enumerate(rows):
        y = 30 + row_h * index
        parts.append(
            f'<text x="6" y="{y + 14}" font-size="12"><title>{escape(job.id)}</title>'
            f"{escape(job.id[:26])}</text>"
        )
        for moment in times:
            x = label_w + plot * (moment - now).total_seconds() / span
            parts.append(
                f'<rect x="{x - 1:.1f}" y="{y + 3}" width="3" height="{row_h - 8}" fill="#0969da">'
                f"<title>{escape(job.id)}: {escape(local_time(moment, tz))}</title></rect>"
            )
        if len(times) >= TIMELINE_CAP:
            parts.append(
                f'<text x="{width - 8}" y="{y + 14}" font-size="10" text-anchor="end" '
                f'fill="#9a6700">first {TIMELINE_CAP}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


COLOURS = {"success": "#1a7f37", "running": "#0969da"}


def runs_chart(runs: Sequence[Run], tz: tzinfo) -> str:
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
        '<text x="4" y="14" font-size="10" fill="#57606a">'
        f"{escape(duration(timedelta(seconds=top)))}</text>",
        f'<text x="4" y="{height - 4}" font-size="10" fill="#57606a">'
        f"{escape(local_time(first, tz))}</text>",
        f'<text x="{width - 4}" y="{height - 4}" font-size="10" text-anchor="end" '
        f'fill="#57606a">{escape(local_time(last, tz))}</text>',
        f'<line x1="{pad}" y1="{height - pad + 10}" x2="{width - 10}" y2="{height - pad + 10}" '
        'stroke="#d0d7de"/>',
    ]
    for moment, seconds, run in points:
        x = pad + (width - pad - 20) * (moment - first).total_seconds() / span
        y = (height - pad + 10) - (height - pad - 10) * seconds / top
        outcome = str(run.outcome.value) if run.outcome is not None else "running"
        colour = COLOURS.get(outcome, "#cf222e")
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"><title>'
            f"{escape(local_time(moment, tz))}: {escape(outcome)}, "
            f"{escape(duration(timedelta(seconds=seconds)))}</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)
