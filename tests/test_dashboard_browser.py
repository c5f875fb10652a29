"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright
through ``executable_path``; no browser download), on a PostgreSQL store.

The browser is installed here when it is missing and the tests run as root
(``apt-get install -y chromium``); otherwise the tests are skipped, or fail under
HORAE_REQUIRE_SERVICES=1. Each page's screenshot goes to ``build/screenshots/`` (a CI
artifact, not committed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from horae import AsyncScheduler, JobExecuted, JobSubmitted, SchedulerInfo
from horae.stores import PostgresStore
from tests.services import POSTGRES_DSN, REQUIRED, unavailable

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from horae.dashboard import create_app  # noqa: E402

CHROMIUM = Path(os.environ.get("HORAE_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"
T = TypeVar("T")


def ensure_chromium() -> Path:
    """Debian's chromium, installed now if missing and we are root."""
    if CHROMIUM.exists():
        return CHROMIUM
    why = f"{CHROMIUM} is missing"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        result = subprocess.run(
            ["apt-get", "install", "-y", "chromium"],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )
        if result.returncode != 0:  # stale package lists: update them, try again
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, env=env)
            result = subprocess.run(
                ["apt-get", "install", "-y", "chromium"],
                capture_output=True,
                text=True,
                timeout=900,
                env=env,
            )
        if CHROMIUM.exists():
            return CHROMIUM
        why += f" and 'apt-get install -y chromium' failed: {result.stderr.strip()[-500:]}"
    else:
        why += " (install it: apt-get install -y chromium, as root)"
    if REQUIRED:
        pytest.fail(f"{why}; HORAE_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(why)


def run(func: Callable[[], Awaitable[T]]) -> T:
    """``func()`` on an event loop of its own, in a thread: Playwright's sync API keeps an
    event loop in the test's thread."""
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(anyio.run(func, backend="asyncio"))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="test helper")
    thread.start()
    thread.join(60)
    assert not thread.is_alive(), "a store helper did not finish in 60 s"
    if errors:
        raise errors[0]
    return results[0]


@pytest.fixture(scope="module")
def schema() -> Iterator[str]:
    """A PostgreSQL schema of its own, dropped at the end."""
    asyncpg = pytest.importorskip("asyncpg")
    name = f"horae_dash_{uuid.uuid4().hex[:12]}"

    async def probe() -> None:
        conn = await asyncpg.connect(POSTGRES_DSN, timeout=5)
        await conn.close()

    try:
        run(probe)
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    yield name

    async def drop() -> None:
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    run(drop)


def with_client(schema: str, action: Callable[[AsyncScheduler], Awaitable[T]]) -> T:
    async def main() -> T:
        store = PostgresStore(POSTGRES_DSN, schema=schema)
        async with AsyncScheduler(store, role="client", timezone="UTC") as scheduler:
            return await action(scheduler)

    return run(main)


@pytest.fixture(scope="module")
def server(schema: str) -> Iterator[str]:
    """The dashboard served by uvicorn in a thread, on a free port; its base URL."""

    async def setup(scheduler: AsyncScheduler) -> None:
        await scheduler.add_job("tests.jobfuncs:sync_add", "interval", minutes=20,
                                args=[1, 2], id="report")  # fmt: skip
        await scheduler.add_job("tests.jobfuncs:async_add", "cron", hour="*/6", minute=30,
                                args=[3], id="cleanup")  # fmt: skip
        await scheduler.add_job("tests.jobfuncs:sync_add", "interval", hours=1,
                                args=[5, 6], id="live-job")  # fmt: skip

    with_client(schema, setup)
    with serve(schema) as url:
        yield url


@contextlib.contextmanager
def serve(schema: str, **options: Any) -> Iterator[str]:
    """``create_app(store, **options)`` served by uvicorn in a thread; its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = create_app(PostgresStore(POSTGRES_DSN, schema=schema), **options)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="dashboard server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the dashboard server stopped"
        assert time.monotonic() < deadline, "the dashboard server did not start in 20 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser(server: str) -> Iterator[Any]:
    executable = ensure_chromium()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable))
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        yield page
    finally:
        context.close()


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_jobs_page_lists_the_jobs_of_the_store(page: Any, server: str) -> None:
    page.goto(server + "/")
    rows = page.locator("#jobs tbody tr")
    sync_api.expect(rows).to_have_count(3)
    sync_api.expect(page.locator('tr[data-job="report"]')).to_contain_text("every 20 minutes")
    sync_api.expect(page.locator('tr[data-job="cleanup"]')).to_contain_text("async_add")
    sync_api.expect(page.locator("#live")).to_have_text("live")
    shot(page, "jobs")


def test_clicking_pause_pauses_the_job_in_the_store(page: Any, server: str, schema: str) -> None:
    page.goto(server + "/")
    row = page.locator('tr[data-job="cleanup"]')
    row.get_by_role("button", name="pause").click()
    sync_api.expect(row.locator("td.paused")).to_contain_text("paused")

    async def stored(scheduler: AsyncScheduler) -> Any:
        return await scheduler.store.get_job("cleanup")

    job = with_client(schema, stored)
    assert job.next_run_time is None
    assert "paused from the dashboard by 127.0.0.1" in job.pause_note
    sync_api.expect(row.get_by_role("button", name="resume")).to_be_visible()


def test_a_run_finishing_elsewhere_appears_live(page: Any, server: str, schema: str) -> None:
    page.goto(server + "/")
    row = page.locator('tr[data-job="live-job"]')
    sync_api.expect(row.locator("td.outcome")).to_have_text("never ran")
    sync_api.expect(page.locator("#live")).to_have_text("live")
    page.evaluate("window.notReloaded = true")

    async def worker() -> None:
        store = PostgresStore(POSTGRES_DSN, schema=schema)
        async with (
            AsyncScheduler(store, share_events=True, scheduler_id="worker-1") as scheduler,
            scheduler.subscribe(JobExecuted) as events,
        ):
            await scheduler.modify_job("live-job", next_run_time=datetime.now(timezone.utc))
            with anyio.fail_after(20):
                async for event in events:
                    if event.job_id == "live-job":
                        break

    run(worker)
    sync_api.expect(row.locator("td.outcome")).to_have_text("success")
    assert page.evaluate("window.notReloaded") is True
    shot(page, "jobs-live")


def test_screenshots_of_each_page(page: Any, server: str) -> None:
    page.goto(server + "/timeline")
    sync_api.expect(page.locator("#timeline rect").first).to_be_attached()
    shot(page, "timeline")
    page.goto(server + "/jobs/live-job")
    sync_api.expect(page.locator("h1")).to_contain_text("live-job")
    shot(page, "job")
    page.goto(server + "/jobs/report/remove")
    sync_api.expect(page.get_by_role("button", name="yes, remove it")).to_be_visible()
    shot(page, "remove")
    response = page.goto(server + "/jobs/no-such-job")
    assert response is not None
    assert response.status == 404
    shot(page, "not-found")


@contextlib.contextmanager
def scheduler_running(schema: str, scheduler_id: str, job_id: str) -> Iterator[None]:
    """A real scheduler on the store, in a thread of its own, running ``job_id`` (due now,
    it hangs until the scheduler stops: then it is cancelled) while the block runs."""
    ready = threading.Event()
    stop = threading.Event()

    async def main() -> None:
        store = PostgresStore(POSTGRES_DSN, schema=schema)
        async with (
            AsyncScheduler(store, scheduler_id=scheduler_id, timezone="UTC") as scheduler,
            scheduler.subscribe(JobSubmitted) as submitted,
        ):
            await scheduler.modify_job(job_id, next_run_time=datetime.now(timezone.utc))
            with anyio.fail_after(20):
                async for event in submitted:
                    if event.job_id == job_id:
                        break
            ready.set()
            await anyio.to_thread.run_sync(stop.wait)
            await scheduler.shutdown(wait=False)

    errors: list[BaseException] = []

    def target() -> None:
        try:
            anyio.run(main, backend="asyncio")
        except BaseException as exc:
            errors.append(exc)
            ready.set()

    thread = threading.Thread(target=target, name="test scheduler", daemon=True)
    thread.start()
    try:
        assert ready.wait(30), "the scheduler did not start its job in 30 s"
        if errors:
            raise errors[0]
        yield
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive(), "the scheduler did not stop in 30 s"
    if errors:
        raise errors[0]


def test_schedulers_page_shows_the_running_scheduler(page: Any, server: str, schema: str) -> None:
    """A scheduler running a job on the store, and a record no longer renewed."""
    now = datetime.now(timezone.utc)

    async def setup(scheduler: AsyncScheduler) -> None:
        await scheduler.add_job("tests.jobfuncs:announce_then_hang", "interval", hours=12,
                                id="long-task", next_run_time=None)  # fmt: skip
        await scheduler.store.heartbeat(
            SchedulerInfo(
                id="old-worker",
                host="decommissioned-host",
                pid=31337,
                started_at=now - timedelta(days=1),
                heartbeat_at=now - timedelta(minutes=42),
                expires_at=now - timedelta(minutes=42) + timedelta(seconds=30),
                state="running",
                version="0.0.9",
            )
        )

    async def cleanup(scheduler: AsyncScheduler) -> None:
        await scheduler.remove_job("long-task")
        await scheduler.store.remove_scheduler("old-worker")

    with_client(schema, setup)
    try:
        with scheduler_running(schema, "worker-2", "long-task"):
            page.goto(server + "/")
            sync_api.expect(page.locator("#runners")).to_contain_text("1 scheduler alive")
            page.goto(server + "/schedulers")
            table = page.locator("#schedulers")
            row = table.locator('tr[data-scheduler="worker-2"]')
            sync_api.expect(row).to_contain_text(socket.gethostname())
            sync_api.expect(row.locator("td.status")).to_have_text("running")
            sync_api.expect(row.locator("td.jobs")).to_have_text("long-task")
            old = table.locator('tr[data-scheduler="old-worker"]')
            sync_api.expect(old.locator("td.status")).to_contain_text("presumed dead")
            sync_api.expect(old.locator("td.status")).to_contain_text("silent for 42 min")
            sync_api.expect(page.locator("h1")).to_contain_text("1 alive")
            shot(page, "schedulers")
            page.evaluate("window.notReloaded = true")
        # The page reloads its content by itself (heartbeats send no event): the stopped
        # scheduler's row goes, without a reload of the page.
        sync_api.expect(row).to_have_count(0, timeout=25_000)
        sync_api.expect(page.locator("h1")).to_contain_text("0 alive")
        sync_api.expect(page.locator("#runners")).to_contain_text("No scheduler is running")
        assert page.evaluate("window.notReloaded") is True
        shot(page, "schedulers-none-alive")
    finally:
        with_client(schema, cleanup)


def test_actions_with_a_token_typed_into_the_page(page: Any, schema: str) -> None:
    with serve(schema, token="s3cret") as url:
        page.goto(url + "/")
        sync_api.expect(page.locator(".notes")).to_contain_text("Actions need the dashboard token")
        row = page.locator('tr[data-job="report"]')
        row.get_by_role("button", name="pause").click()
        sync_api.expect(page.locator("main")).to_contain_text("needs the dashboard token")
        shot(page, "forbidden")
        page.goto(url + "/")
        page.locator("#token").fill("s3cret")
        row.get_by_role("button", name="pause").click()
        sync_api.expect(row.locator("td.paused")).to_contain_text("paused")
        # The token stays in the tab: the next action needs no typing.
        row.get_by_role("button", name="resume").click()
        sync_api.expect(row.locator("td.paused")).to_have_text("no")
