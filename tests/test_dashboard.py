"""The web dashboard (horae.dashboard) through httpx's ASGI transport: pages, actions,
the token and read-only rules, 404 and store-down pages, the event stream."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import pytest

from horae import AsyncScheduler, JobError, JobExecuted, JobModified, JobRemoved, SchedulerInfo
from horae.errors import StoreError
from horae.jobs import Run
from horae.stores import MemoryStore, PostgresStore, SQLiteStore

starlette = pytest.importorskip("starlette")
httpx = pytest.importorskip("httpx")

from horae.dashboard import create_app, is_loopback  # noqa: E402


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # httpx's ASGI transport and uvicorn: asyncio


async def noop() -> None:
    pass


async def boom() -> None:
    raise RuntimeError("it broke <badly>")


@pytest.fixture
async def scheduler(anyio_backend: str) -> AsyncIterator[AsyncScheduler]:
    async with AsyncScheduler(MemoryStore(), timezone="UTC") as scheduler:
        await scheduler.add_job(noop, "interval", minutes=30, id="tick")
        await scheduler.add_job(f"{__name__}:boom", "cron", hour=3, id="nightly")
        yield scheduler


async def run_once(scheduler: AsyncScheduler, job_id: str) -> None:
    """Make the job due now and wait until its run has finished."""
    async with scheduler.subscribe(JobExecuted, JobError) as events:
        await scheduler.modify_job(job_id, next_run_time=datetime.now(timezone.utc))
        with anyio.fail_after(10):
            async for event in events:
                if event.job_id == job_id:
                    return


def client(app: Any) -> Any:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


@pytest.mark.anyio
async def test_jobs_page_lists_jobs_with_trigger_and_next_run(scheduler: AsyncScheduler) -> None:
    await scheduler.pause_job("nightly")
    async with client(create_app(scheduler)) as http:
        response = await http.get("/")
    assert response.status_code == 200
    page = response.text
    assert 'data-job="tick"' in page
    assert 'data-job="nightly"' in page
    assert "every 30 minutes" in page.lower() or "30 min" in page
    assert f"{__name__}:boom" in page
    assert "paused" in page
    assert "never ran" in page
    assert "share_events=True" in page
    assert 'action="/jobs/tick/pause"' in page
    assert 'action="/jobs/nightly/resume"' in page


@pytest.mark.anyio
async def test_job_page_shows_runs_with_error_text_and_chart(scheduler: AsyncScheduler) -> None:
    await run_once(scheduler, "nightly")
    await run_once(scheduler, "tick")
    async with client(create_app(scheduler)) as http:
        failing = await http.get("/jobs/nightly")
        fine = await http.get("/jobs/tick")
    assert failing.status_code == 200
    assert "it broke &lt;badly&gt;" in failing.text  # escaped, never raw HTML
    assert "<badly>" not in failing.text
    assert 'id="chart"' in failing.text
    assert "Late by" in failing.text
    assert "Why it ran" in failing.text
    assert "success" in fine.text


@pytest.mark.anyio
async def test_timeline_and_schedulers_pages(scheduler: AsyncScheduler) -> None:
    async with client(create_app(scheduler)) as http:
        timeline = await http.get("/timeline")
        schedulers = await http.get("/schedulers")
    assert timeline.status_code == 200
    # Every 30 minutes for 24 hours: 48 or 49 fire times of "tick", one of "nightly".
    assert timeline.text.count("<title>tick: ") in (48, 49)
    assert timeline.text.count("<title>nightly: ") == 1
    assert schedulers.status_code == 200
    assert scheduler.id in schedulers.text


@pytest.mark.anyio
async def test_schedulers_page_lists_the_register(scheduler: AsyncScheduler) -> None:
    """A scheduler started on the store is listed with its host and heartbeat; one whose
    record is no longer renewed is marked silent, presumed dead."""
    now = datetime.now(timezone.utc)
    await scheduler.store.heartbeat(
        SchedulerInfo(
            id="gone-1",
            host="old-host.example",
            pid=4242,
            started_at=now - timedelta(hours=3),
            heartbeat_at=now - timedelta(minutes=10),
            expires_at=now - timedelta(minutes=10) + timedelta(seconds=30),
            state="running",
            version="0.0.1",
        )
    )
    async with client(create_app(scheduler)) as http:
        response = await http.get("/schedulers")
        jobs = await http.get("/")
    assert response.status_code == 200
    page = response.text
    assert "1 alive" in page
    assert "stores keep no register" not in page
    ours = _row(page, scheduler.id)
    assert socket.gethostname() in ours
    assert f">{os.getpid()}<" in ours
    assert "running" in ours
    assert "ago" in ours or "now" in ours  # the last heartbeat, relative
    assert "this process" in ours
    assert "presumed dead" not in ours
    gone = _row(page, "gone-1")
    assert "class=silent" in gone
    assert "old-host.example" in gone
    assert "presumed dead" in gone
    assert "silent for 10 min" in gone
    assert 'data-refresh="10"' in page
    assert "Run by" in jobs.text
    assert "1 scheduler alive" in jobs.text


def _row(page: str, scheduler_id: str) -> str:
    """The schedulers table's row of ``scheduler_id``."""
    start = page.index(f'<tr data-scheduler="{scheduler_id}"')
    return page[start : page.index("</tr>", start)]


@pytest.mark.anyio
async def test_schedulers_page_names_the_jobs_each_scheduler_runs(
    scheduler: AsyncScheduler,
) -> None:
    release = anyio.Event()
    both_started = anyio.Event()
    started: list[str] = []

    async def slow() -> None:
        started.append("run")
        if len(started) == 2:
            both_started.set()
        await release.wait()

    # More jobs than the page used to look through (it read the runs of each job).
    for i in range(201):
        await scheduler.add_job(noop, "interval", days=1, id=f"idle-{i:03}")
    await scheduler.add_job(
        slow, "interval", hours=1, id="slow-one", next_run_time=datetime.now(timezone.utc)
    )
    await scheduler.add_job(slow, id="one-off")  # removed from the store as its run starts
    with anyio.fail_after(10):
        await both_started.wait()
    try:
        assert "one-off" not in await scheduler.store.get_job_ids()
        async with client(create_app(scheduler)) as http:
            page = (await http.get("/schedulers")).text
    finally:
        release.set()
    row = _row(page, scheduler.id)
    assert 'href="/jobs/slow-one"' in row
    assert "<td class=num>2</td>" in row  # the run leases it holds
    # The one-off job's run is listed, by its job id, not linked: its job left the store.
    assert ">one-off</span> <small>(removed)</small>" in row
    assert 'href="/jobs/one-off"' not in row
    assert "idle-" not in row
    assert "not listed" not in page


class CountingStore(MemoryStore):
    """A memory store that counts the calls the dashboard's pages make."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    async def get_runs(self, job_id: str, limit: int = 100) -> list[Run]:
        self.calls["get_runs"] += 1
        return await super().get_runs(job_id, limit)

    async def get_latest_runs(self, job_ids: Sequence[str]) -> dict[str, Run]:
        self.calls["get_latest_runs"] += 1
        return await super().get_latest_runs(job_ids)

    async def get_runs_in_flight(self, limit: int = 1000) -> list[Run]:
        self.calls["get_runs_in_flight"] += 1
        return await super().get_runs_in_flight(limit)


@pytest.mark.anyio
async def test_pages_read_runs_in_one_call_not_one_per_job(anyio_backend: str) -> None:
    store = CountingStore()
    async with AsyncScheduler(store, timezone="UTC") as scheduler:
        for i in range(30):
            await scheduler.add_job(noop, "interval", hours=1, id=f"job-{i:02}")
        await run_once(scheduler, "job-07")
        store.calls.clear()
        async with client(create_app(scheduler)) as http:
            jobs = await http.get("/")
            assert store.calls == {"get_latest_runs": 1}
            store.calls.clear()
            schedulers = await http.get("/schedulers")
            assert store.calls == {"get_runs_in_flight": 1}
    assert jobs.status_code == schedulers.status_code == 200
    assert jobs.text.count("<tr data-job=") == 30
    assert 'class="success">success' in _job_row(jobs.text, "job-07")
    assert "never ran" in _job_row(jobs.text, "job-08")


def _job_row(page: str, job_id: str) -> str:
    """The jobs table's row of ``job_id``."""
    start = page.index(f'<tr data-job="{job_id}"')
    return page[start : page.index("</tr>", start)]


def _unreadable_on_sqlite(path: Path, job_id: str, ref: str) -> None:
    """Make the stored job's callable ``ref``, as a job added from a script whose
    ``__main__`` defines it: this process cannot import it back."""
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        conn.execute(
            "UPDATE jobs SET payload = json_replace(payload, '$.func', ?) WHERE id = ?",
            (ref, job_id),
        )
    finally:
        conn.close()


@pytest.mark.anyio
async def test_a_job_that_cannot_be_read_is_listed_with_why_and_can_be_removed(
    anyio_backend: str, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    async with AsyncScheduler(store, timezone="UTC") as scheduler:
        await scheduler.add_job(noop, "interval", minutes=30, id="fine")
        await scheduler.add_job(noop, "interval", minutes=30, id="tick")
        await run_once(scheduler, "tick")
        _unreadable_on_sqlite(store.path, "tick", "__main__:tick")
        assert [job.id for job in await scheduler.get_jobs()] == ["fine"]
        async with client(create_app(scheduler)) as http:
            jobs = await http.get("/")
            job = await http.get("/jobs/tick")
            pause = await http.post("/jobs/tick/pause")
            timeline = await http.get("/timeline")
            confirm = await http.get("/jobs/tick/remove")
            await scheduler.remove_job("fine")
            only = await http.get("/")
            removed = await http.post("/jobs/tick/remove", data={"next": "/"})
            empty = await http.get("/")
        assert await store.get_job_ids() == []

    assert jobs.status_code == 200
    assert "<h1>Jobs <small>(2)</small>" in jobs.text
    assert 'data-job="fine"' in jobs.text
    row = _job_row(jobs.text, "tick")
    assert "cannot be read here:" in row
    assert "its callable cannot be imported: &#x27;__main__:tick&#x27;" in row
    assert "has no attribute &#x27;tick&#x27;" in row
    assert 'class="success">success' in row  # its runs can be read: its last outcome
    assert 'href="/jobs/tick/remove"' in row
    assert 'action="/jobs/tick/pause"' not in jobs.text
    assert "1 job cannot be read here" in jobs.text
    assert "__main__:…" in jobs.text  # the hint for a script's function

    assert job.status_code == 200
    assert "This job cannot be read here:" in job.text
    assert "has no attribute &#x27;tick&#x27;" in job.text
    assert "<table id=runs>" in job.text
    assert 'class="success">success' in job.text
    assert 'href="/jobs/tick/remove"' in job.text
    assert 'action="/jobs/tick/pause"' not in job.text
    assert "Why it ran" in job.text

    assert pause.status_code == 409
    assert "cannot be read here" in pause.text
    assert timeline.status_code == 200
    assert "1 job cannot be read here and is not drawn" in timeline.text
    assert confirm.status_code == 200
    assert 'action="/jobs/tick/remove"' in confirm.text

    assert only.status_code == 200
    assert "No jobs in this store." not in only.text
    assert 'data-job="tick"' in only.text
    assert removed.status_code == 303
    assert "No jobs in this store." in empty.text


@pytest.mark.anyio
async def test_unreadable_jobs_beyond_the_lookup_limit_are_listed_by_id(
    anyio_backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from horae.dashboard import _app

    monkeypatch.setattr(_app, "UNREADABLE_LOOKUP_LIMIT", 1)
    store = SQLiteStore(tmp_path / "jobs.db")
    async with AsyncScheduler(store, timezone="UTC", role="client") as scheduler:
        for job_id in ("a", "b"):
            await scheduler.add_job(noop, "interval", minutes=30, id=job_id)
            _unreadable_on_sqlite(store.path, job_id, "gone_module_xyz:f")
        async with client(create_app(scheduler)) as http:
            page = (await http.get("/")).text
    assert "2 jobs cannot be read here" in page
    assert "__main__" not in page  # no hint about scripts' functions here
    assert "cannot import module &#x27;gone_module_xyz&#x27;" in _job_row(page, "a")
    assert "not looked up" in _job_row(page, "b")
    assert 'href="/jobs/b"' in _job_row(page, "b")


@pytest.mark.anyio
async def test_unknown_job_is_a_404_page(scheduler: AsyncScheduler) -> None:
    async with client(create_app(scheduler)) as http:
        page = await http.get("/jobs/no-such-job")
        remove = await http.get("/jobs/no-such-job/remove")
        action = await http.post("/jobs/no-such-job/pause")
        other = await http.get("/nowhere")
    for response in (page, remove, action, other):
        assert response.status_code == 404
        assert "Not found" in response.text
        assert "Traceback" not in response.text
    assert "no-such-job" in page.text


@pytest.mark.anyio
async def test_actions_pause_resume_run_now_and_remove(scheduler: AsyncScheduler) -> None:
    seen: list[Any] = []
    scheduler.add_listener(seen.append)
    async with client(create_app(scheduler)) as http:
        paused = await http.post("/jobs/tick/pause", data={"next": "/"})
        assert paused.status_code == 303
        assert paused.headers["location"] == "/"
        job = await scheduler.get_job("tick")
        assert job.next_run_time is None
        assert job.pause_note is not None
        assert "dashboard" in job.pause_note

        resumed = await http.post("/jobs/tick/resume")
        assert resumed.status_code == 303
        assert resumed.headers["location"] == "/jobs/tick"
        assert (await scheduler.get_job("tick")).next_run_time is not None

        before = datetime.now(timezone.utc)
        await http.post("/jobs/nightly/run-now")
        next_run = (await scheduler.get_job("nightly")).next_run_time
        assert next_run is not None
        assert before <= next_run <= before + timedelta(minutes=1)

        confirm = await http.get("/jobs/tick/remove")
        assert confirm.status_code == 200
        assert "cannot be undone" in confirm.text
        assert 'action="/jobs/tick/remove"' in confirm.text
        assert (await scheduler.get_job("tick")).id == "tick"  # the GET removes nothing
        removed = await http.post("/jobs/tick/remove", data={"next": "/"})
        assert removed.status_code == 303
    assert [job.id for job in await scheduler.get_jobs()] == ["nightly"]
    modified = [e for e in seen if isinstance(e, JobModified)]
    # Every action's event names the dashboard and the client that asked (httpx's
    # ASGI transport calls itself 127.0.0.1).
    assert [(e.job_id, e.actor) for e in modified] == [
        ("tick", "dashboard 127.0.0.1"),
        ("tick", "dashboard 127.0.0.1"),
        ("nightly", "dashboard 127.0.0.1"),
    ]
    removal = [e for e in seen if isinstance(e, JobRemoved)]
    assert [e.job_id for e in removal] == ["tick"]
    assert removal[0].origin == scheduler.id
    assert removal[0].actor == "dashboard 127.0.0.1"


@pytest.mark.anyio
async def test_actions_need_the_token_when_one_is_set(scheduler: AsyncScheduler) -> None:
    async with client(create_app(scheduler, token="s3cret")) as http:
        page = await http.get("/")
        assert "Actions need the dashboard token" in page.text
        assert "s3cret" not in page.text
        missing = await http.post("/jobs/tick/pause")
        wrong = await http.post("/jobs/tick/pause", data={"token": "guess"})
        assert missing.status_code == wrong.status_code == 403
        assert "token" in missing.text
        assert (await scheduler.get_job("tick")).next_run_time is not None
        right = await http.post("/jobs/tick/pause", data={"token": "s3cret"})
        assert right.status_code == 303
        header = await http.post("/jobs/tick/resume", headers={"X-Horae-Token": "s3cret"})
        assert header.status_code == 303
    assert (await scheduler.get_job("tick")).next_run_time is not None


@pytest.mark.anyio
async def test_cross_site_posts_are_refused(scheduler: AsyncScheduler) -> None:
    async with client(create_app(scheduler)) as http:
        forged = await http.post("/jobs/tick/pause", headers={"Origin": "https://evil.example"})
        fetched = await http.post("/jobs/tick/pause", headers={"Sec-Fetch-Site": "cross-site"})
        same = await http.post("/jobs/tick/pause", headers={"Origin": "http://127.0.0.1"})
    assert forged.status_code == fetched.status_code == 403
    assert same.status_code == 303


@pytest.mark.anyio
async def test_allowed_hosts_refuse_other_host_names(scheduler: AsyncScheduler) -> None:
    app = create_app(scheduler, allowed_hosts=["127.0.0.1", "localhost"])
    async with client(app) as http:
        fine = await http.get("/")
        rebound = await http.get("/", headers={"Host": "attacker.example"})
        action = await http.post("/jobs/tick/pause", headers={"Host": "attacker.example:8787"})
    assert fine.status_code == 200
    assert rebound.status_code == action.status_code == 400
    assert (await scheduler.get_job("tick")).next_run_time is not None


@pytest.mark.anyio
async def test_store_failing_while_running_shows_the_banner(
    scheduler: AsyncScheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("connection refused by 127.0.0.1:5432")

    monkeypatch.setattr(scheduler.store, "get_jobs", refuse)
    monkeypatch.setattr(scheduler.store, "get_job", refuse)
    async with client(create_app(scheduler)) as http:
        jobs = await http.get("/")
        job = await http.get("/jobs/tick")
        fragment = await http.get("/timeline", headers={"X-Horae-Fragment": "1"})
    for response in (jobs, job, fragment):
        assert response.status_code == 503
        assert "store unreachable:" in response.text
        assert "connection refused by 127.0.0.1:5432" in response.text
        assert "Traceback" not in response.text
    assert fragment.text.startswith("<main>")


@pytest.mark.anyio
async def test_read_only_shows_and_allows_no_actions(scheduler: AsyncScheduler) -> None:
    async with client(create_app(scheduler, read_only=True)) as http:
        page = await http.get("/")
        job = await http.get("/jobs/tick")
        refused = await http.post("/jobs/tick/pause")
        confirm = await http.get("/jobs/tick/remove")
    assert "Read-only" in page.text
    assert "<form" not in page.text
    assert "<form" not in job.text
    assert refused.status_code == confirm.status_code == 403
    assert (await scheduler.get_job("tick")).next_run_time is not None


@pytest.mark.anyio
async def test_mounted_under_a_prefix_links_stay_under_it(scheduler: AsyncScheduler) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    outer = Starlette(routes=[Mount("/ops/horae", app=create_app(scheduler))])
    async with client(outer) as http:
        page = await http.get("/ops/horae/")
        moved = await http.post("/ops/horae/jobs/tick/pause")
    assert 'href="/ops/horae/jobs/tick"' in page.text
    assert 'data-events="/ops/horae/events"' in page.text
    assert moved.headers["location"] == "/ops/horae/jobs/tick"


@pytest.mark.anyio
async def test_store_that_is_down_shows_a_banner_not_a_traceback(anyio_backend: str) -> None:
    asgi_lifespan = pytest.importorskip("asgi_lifespan")
    # Nothing listens on port 1.
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/test")
    app = create_app(store)
    async with asgi_lifespan.LifespanManager(app), client(app) as http:
        with anyio.fail_after(20):
            page = await http.get("/")
            job = await http.get("/jobs/tick")
            action = await http.post("/jobs/tick/pause")
    for response in (page, job, action):
        assert response.status_code == 503
        assert "store unreachable:" in response.text
        assert "Traceback" not in response.text


@pytest.mark.anyio
async def test_app_on_a_store_runs_its_own_client_scheduler(anyio_backend: str) -> None:
    asgi_lifespan = pytest.importorskip("asgi_lifespan")
    store = MemoryStore()
    app = create_app(store)
    async with asgi_lifespan.LifespanManager(app), client(app) as http:
        empty = await http.get("/")
        assert "No jobs in this store." in empty.text
        backend = app.state.horae_dashboard
        own = await backend.scheduler()
        assert own.role == "client"
        assert own.share_events
        await own.add_job(noop, "interval", hours=1, id="hourly")
        listed = await http.get("/")
        assert 'data-job="hourly"' in listed.text
        # The dashboard's own scheduler is a client: not in the register, which is
        # empty until a scheduler starts on the store.
        empty = await http.get("/schedulers")
        assert own.id not in empty.text
        assert "No scheduler is running on this store" in empty.text
        assert "No scheduler is running on this store" in (await http.get("/")).text
        async with AsyncScheduler(store, scheduler_id="worker-7"):
            listed = await http.get("/schedulers")
        assert 'data-scheduler="worker-7"' in listed.text
        assert "1 alive" in listed.text
        assert "worker-7" not in (await http.get("/schedulers")).text


async def read_events(app: Any, until: int) -> list[dict[str, Any]]:
    """Call the app's /events endpoint directly; the first ``until`` events it streams."""
    events: list[dict[str, Any]] = []
    done = anyio.Event()

    async def receive() -> dict[str, Any]:
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
            headers = dict(message["headers"])
            assert headers[b"content-type"].startswith(b"text/event-stream")
        elif message["type"] == "http.response.body":
            for block in message.get("body", b"").decode().split("\n\n"):
                lines = dict(
                    line.split(": ", 1) for line in block.splitlines() if not line.startswith(":")
                )
                if lines.get("event") == "job":
                    events.append(json.loads(lines["data"]))
            if len(events) >= until:
                done.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "path": "/events",
        "raw_path": b"/events",
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    return events


@pytest.mark.anyio
async def test_event_stream_sends_job_and_run_events(scheduler: AsyncScheduler) -> None:
    app = create_app(scheduler)

    async def act() -> None:
        await anyio.sleep(0.2)
        await scheduler.pause_job("tick")
        await run_once(scheduler, "nightly")
        await scheduler.remove_all_jobs()

    events: list[dict[str, Any]] = []

    async def read() -> None:
        events.extend(await read_events(app, until=5))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(read)
            tg.start_soon(act)
    kinds = [(event["type"], event.get("job_id")) for event in events]
    assert kinds[0] == ("JobModified", "tick")
    assert ("JobError", "nightly") in kinds
    assert kinds[-1] == ("AllJobsRemoved", None)
    assert all(event["origin"] == scheduler.id for event in events)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.1")
    assert is_loopback("localhost")
    assert is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    assert not is_loopback("192.0.2.10")


# ------------------------------------------------------------------ the CLI command

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def horae(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "horae", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_cli_refuses_other_hosts_without_a_token(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/jobs.db"
    result = horae("dashboard", "--store", store, "--host", "0.0.0.0")
    assert result.returncode == 2
    assert result.stderr.startswith("horae: error: --host 0.0.0.0")
    assert "--token" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_serves_the_dashboard_until_sigterm(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/jobs.db"
    added = horae("jobs", "add", "--store", store, "tests.jobfuncs:sync_add", "interval",
                  "--id", "cli-job", "minutes=5", "--args", "[1]")  # fmt: skip
    assert added.returncode == 0, added.stderr
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "horae", "dashboard", "--store", store, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.communicate()[1]
                assert time.monotonic() < deadline, "the dashboard did not start in 30 s"
                time.sleep(0.2)
        assert response.status_code == 200
        assert 'data-job="cli-job"' in response.text
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
