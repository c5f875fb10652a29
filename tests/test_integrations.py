"""Each example under examples/ runs for real in the host it shows (docs/integrations.md)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType

import anyio
import pytest

from horae import AsyncScheduler, JobExecuted, Scheduler
from horae.testing import FakeClock, wait_idle

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
START = "2027-01-01T00:00:00+00:00"


def load_example(name: str) -> ModuleType:
    """Import examples/<name>.py under its own name, as ``python -m`` or uvicorn would."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def parse_sse(text: str) -> list[tuple[str, dict[str, object]]]:
    """The (event, data) pairs of a server-sent event stream; comments are skipped."""
    events = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":")
        )
        if fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


# ---------------------------------------------------------------------------- FastAPI


@pytest.mark.anyio
async def test_fastapi_lifespan_handler_and_server_sent_events() -> None:
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    asgi_lifespan = pytest.importorskip("asgi_lifespan")
    example = load_example("fastapi_app")
    clock = FakeClock(START)
    scheduler = AsyncScheduler(clock=clock, timezone="UTC")
    app = example.create_app(scheduler)

    # httpx's ASGI transport does not run lifespan events: LifespanManager does.
    async with asgi_lifespan.LifespanManager(app) as manager:
        assert scheduler.running  # started by the app's lifespan
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            response = await client.post("/greetings", json={"name": "Ada", "every": 5})
            assert response.status_code == 201
            assert response.json()["id"] == "greet-Ada"
            assert response.json()["next_run_time"].startswith("2027-01-01T00:00:05")

            # The ASGI transport hands over a response once it is complete, so the stream
            # is asked for two events; time moves until the subscriber has seen them.
            streamed: list[httpx.Response] = []

            async def read_stream() -> None:
                streamed.append(await client.get("/events", params={"limit": 2}))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_stream)
                    while not streamed:
                        clock.advance(5)
                        await wait_idle(scheduler)
                        await anyio.sleep(0.001)

    assert not scheduler.running  # stopped with the app
    response = streamed[0]
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert [kind for kind, _ in events] == ["executed", "executed"]
    assert all(data["job_id"] == "greet-Ada" for _, data in events)
    assert all(data["result"] == "hello, Ada" for _, data in events)
    times = [data["scheduled_time"] for _, data in events]
    assert times == sorted(set(times))  # two distinct fire times, in order


# ------------------------------------------------------------------ asyncio and trio


async def drive(clock: FakeClock, scheduler: AsyncScheduler, finished: anyio.Event) -> None:
    """Move fake time a second at a time until ``finished``; no real waiting."""
    with anyio.fail_after(10):
        while not finished.is_set():
            if scheduler.running:
                clock.advance(1)
                await wait_idle(scheduler)
            await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_plain_async_main_on_the_test_backend() -> None:
    # The anyio_backend fixture runs this on asyncio and on trio.
    example = load_example("plain_async")
    clock = FakeClock(START)
    scheduler = AsyncScheduler(clock=clock, timezone="UTC")
    finished = anyio.Event()
    results: list[str] = []

    async def run_main() -> None:
        results.extend(await example.main(scheduler, results=4))
        finished.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_main)
        await drive(clock, scheduler, finished)

    assert not scheduler.running
    assert len(results) == 4
    assert "poll: 'polled inbox'" in results  # the coroutine job, in the test's loop
    assert f"checksum: {example.checksum('horae')!r}" in results  # the sync job, in a thread


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_plain_async_script_runs_and_exits(backend: str) -> None:
    args = [sys.executable, str(EXAMPLES / "plain_async.py")]
    if backend == "trio":
        args.append("trio")
    done = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "stopped"
    assert "poll: 'polled inbox'" in lines
    assert any(line.startswith("checksum: '") for line in lines)


# ------------------------------------------------------------- the blocking facade


def test_background_scheduler_with_a_fake_clock_moved_from_the_main_thread() -> None:
    example = load_example("background")
    clock = FakeClock(START)
    scheduler = Scheduler(clock=clock, timezone="UTC")
    results: list[str] = []
    thread = threading.Thread(target=lambda: results.extend(example.main(scheduler, runs=3)))
    thread.start()
    deadline = time.monotonic() + 10
    while thread.is_alive() and time.monotonic() < deadline:
        if scheduler.running:
            clock.advance(1)  # from another thread: the facade's loop is woken safely
        thread.join(0.01)
    assert not thread.is_alive()
    assert not scheduler.running  # main() shut it down
    assert len(results) == 3
    assert all(line.startswith("heartbeat: alive at ") for line in results)


def test_blocking_scheduler_runs_until_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "blocking.py")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # blocks until the first run (started at once)
        assert first.startswith("tick "), process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    assert out.splitlines()[-1] == "stopped"


# --------------------------------------------------------------------------- Flask


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_flask_workers_share_one_sqlite_store(tmp_path: Path) -> None:
    pytest.importorskip("flask")
    httpx = pytest.importorskip("httpx")
    ports = [free_port(), free_port()]
    env = {**os.environ, "HORAE_DB": str(tmp_path / "jobs.db")}
    workers = [
        subprocess.Popen(
            [sys.executable, str(EXAMPLES / "flask_app.py")],
            env={**env, "PORT": str(port)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    a, b = (f"http://127.0.0.1:{port}" for port in ports)
    try:
        deadline = time.monotonic() + 20
        for url in (a, b):  # wait for both workers to serve
            while True:
                try:
                    httpx.get(f"{url}/reports/ops").raise_for_status()
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "a Flask worker did not start"
                    time.sleep(0.05)
        created = httpx.post(f"{a}/reports/ops")
        assert created.status_code == 201
        assert created.json()["id"] == "report-ops"

        while True:  # the job, added through worker a, is visible to and run by the pair
            runs = httpx.get(f"{b}/reports/ops").json()["runs"]
            if sum(run["outcome"] == "success" for run in runs) >= 3:
                break
            assert time.monotonic() < deadline, f"too few runs: {runs}"
            time.sleep(0.05)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGINT)  # the dev server exits; atexit shuts down
        errors = [worker.communicate(timeout=15)[1].decode() for worker in workers]

    finished = [run for run in runs if run["outcome"] == "success"]
    times = [run["scheduled_time"] for run in finished]
    assert len(times) == len(set(times))  # each fire time ran once, in one of the workers
    assert all(run["result"].startswith("report for ops at ") for run in finished)
    assert all(run["scheduler"] for run in finished)  # each names the scheduler that ran it
    for error in errors:
        assert "Traceback" not in error, error


# ------------------------------------------------------------------------- Tornado


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # Tornado runs on asyncio only
async def test_tornado_handler_adds_a_job_that_runs_on_tornados_loop(anyio_backend: str) -> None:
    pytest.importorskip("tornado")
    httpx = pytest.importorskip("httpx")
    import tornado.httpserver
    import tornado.netutil

    example = load_example("tornado_app")
    sockets = tornado.netutil.bind_sockets(0, "127.0.0.1")
    url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    async with AsyncScheduler(timezone="UTC") as scheduler:
        server = tornado.httpserver.HTTPServer(example.make_app(scheduler))
        server.add_sockets(sockets)
        try:
            async with (
                httpx.AsyncClient(base_url=url) as client,
                scheduler.subscribe(JobExecuted) as executed,
            ):
                created = await client.post("/jobs/tmp")
                assert created.status_code == 201
                assert created.json()["id"] == "tmp"
                with anyio.fail_after(10):  # an interval of 0.5 s: a run comes soon
                    event = await executed.__anext__()
                assert event.job_id == "tmp"
                runs = (await client.get("/jobs/tmp")).json()
        finally:
            server.stop()
    assert runs[0] == {"outcome": "success", "result": "cleaned tmp"}


# ------------------------------------------------------------------------- Twisted


def test_twisted_asyncio_reactor_script_runs_jobs_awaiting_deferreds() -> None:
    pytest.importorskip("twisted")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "twisted_app.py")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["'example.org resolved by Twisted'"] * 3


# ------------------------------------------------------------------------------ Qt


def test_qt_app_updates_a_widget_from_the_event_stream_offscreen() -> None:
    pytest.importorskip("PySide6.QtWidgets")
    pytest.importorskip("qasync")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "qt_app.py")],
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    labels = done.stdout.splitlines()
    assert len(labels) == 3
    assert all(line.startswith("label: ") and line != "label: waiting" for line in labels)
    assert len(set(labels)) == 3  # three runs, three texts set on the widget


# -------------------------------------------------------------------------- gevent


def test_gevent_monkey_patched_facade_runs_jobs_beside_other_greenlets() -> None:
    # In a process of its own: monkey-patching would change this test process for good.
    pytest.importorskip("gevent")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "gevent_app.py")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "other greenlet still running: True",
        "fetched 1",
        "fetched 1",
        "fetched 1",
    ]
