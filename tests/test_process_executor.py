"""ProcessExecutor with real worker processes (spawned, so each new worker costs ~0.2 s)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import types
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from horae import AsyncScheduler, Retry, RunOutcome
from horae.errors import HoraeError, InvalidCallableError, JobArgumentError, SerializationError
from horae.executors import process as process_module
from horae.executors.process import ProcessExecutor, WorkerProcessError
from horae.jobs import Run
from horae.testing import FakeClock, wait_idle
from tests import procfuncs

pytestmark = pytest.mark.anyio


@pytest.fixture
async def executor() -> AsyncIterator[ProcessExecutor]:
    executor = ProcessExecutor(2)
    await executor.start()
    try:
        yield executor
    finally:
        with anyio.fail_after(10):
            await executor.stop()


@pytest.fixture
async def scheduler(clock: FakeClock) -> AsyncIterator[AsyncScheduler]:
    executors = {"process": ProcessExecutor(2)}
    async with AsyncScheduler(clock=clock, timezone="UTC", executors=executors) as scheduler:
        yield scheduler


async def run_once(scheduler: AsyncScheduler, func: Any, **options: Any) -> Run:
    job = await scheduler.add_job(func, executor="process", **options)
    with anyio.fail_after(20):
        await wait_idle(scheduler)
    (run,) = await scheduler.get_runs(job.id)
    return run


async def eventually(condition: Callable[[], bool], what: str) -> None:
    """Wait (5 s at most) for something another process does."""
    for _ in range(250):
        if condition():
            return
        await anyio.sleep(0.02)
    pytest.fail(f"{what} did not happen within 5 s")


def exited(pid: int) -> bool:
    """Whether ``pid`` has exited: gone, or a zombie not yet reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def wait_dead(pid: int) -> None:
    await eventually(lambda: exited(pid), f"the exit of process {pid}")


def alive_pids() -> set[int]:
    return {p.pid for p in multiprocessing.active_children() if p.pid is not None}


async def test_round_trip_through_the_scheduler(scheduler: AsyncScheduler) -> None:
    when = datetime(2027, 3, 1, 12, 30, tzinfo=timezone.utc)
    key = uuid.uuid4()
    args = [when, Decimal("1.10"), (1, "two"), b"\x00\xff"]
    kwargs = {"span": timedelta(minutes=5), "key": key, "tags": {"a", "b"}}
    run = await run_once(scheduler, procfuncs.echo, args=args, kwargs=kwargs, id="echo")
    assert run.outcome is RunOutcome.SUCCESS, run.error
    assert run.result["args"] == tuple(args)
    assert run.result["kwargs"] == kwargs
    assert run.result["pid"] != os.getpid()


async def test_coroutine_function_and_current_run(scheduler: AsyncScheduler) -> None:
    run = await run_once(scheduler, procfuncs.async_echo, args=[1], kwargs={"b": 2})
    assert run.outcome is RunOutcome.SUCCESS, run.error
    assert (run.result["args"], run.result["kwargs"]) == ((1,), {"b": 2})
    run = await run_once(scheduler, procfuncs.whoami, id="me")
    assert run.outcome is RunOutcome.SUCCESS, run.error
    assert (run.result["job_id"], run.result["attempt"]) == ("me", run.attempt)
    assert run.result["pid"] != os.getpid()


async def test_exception_is_an_error_run_with_the_worker_traceback(
    scheduler: AsyncScheduler,
) -> None:
    run = await run_once(scheduler, procfuncs.fail, args=["boom"])
    assert run.outcome is RunOutcome.ERROR
    assert run.error is not None
    assert "ValueError: boom" in run.error
    # The worker's own traceback: the line in the job's module that raised.
    assert 'procfuncs.py", line' in run.error
    assert "in fail" in run.error


async def test_retry_on_the_exception_type_raised_in_the_worker(
    scheduler: AsyncScheduler, clock: FakeClock
) -> None:
    retry = Retry(attempts=2, backoff=1, jitter=0, on=ValueError)
    await scheduler.add_job(procfuncs.fail, args=["boom"], executor="process", id="r", retry=retry)
    with anyio.fail_after(20):
        await wait_idle(scheduler)
        clock.advance(1)
        await wait_idle(scheduler)
    runs = await scheduler.get_runs("r")
    assert sorted((run.attempt, run.outcome) for run in runs) == [
        (1, RunOutcome.ERROR),
        (2, RunOutcome.ERROR),
    ]


async def test_exception_type_is_kept(executor: ProcessExecutor) -> None:
    with pytest.raises(ValueError, match=r"^boom$") as caught:
        await executor.run(procfuncs.fail, ("boom",), {})
    assert "in fail" in str(caught.value.__cause__)
    with pytest.raises(WorkerProcessError, match=r"UnpicklableError: 1/2"):
        await executor.run(procfuncs.fail_unpicklable, (), {})


async def test_worker_death_is_an_error_run_and_the_next_run_gets_a_fresh_worker(
    scheduler: AsyncScheduler,
) -> None:
    first = await run_once(scheduler, procfuncs.echo)
    run = await run_once(scheduler, procfuncs.exit_hard, args=[3])
    assert run.outcome is RunOutcome.ERROR
    assert run.error is not None
    assert "exited with code 3" in run.error
    run = await run_once(scheduler, procfuncs.kill_self)
    assert run.outcome is RunOutcome.ERROR
    assert run.error is not None
    assert "killed by SIGKILL" in run.error
    after = await run_once(scheduler, procfuncs.echo)
    assert after.outcome is RunOutcome.SUCCESS, after.error
    assert after.result["pid"] != first.result["pid"]


async def test_worker_death_direct(executor: ProcessExecutor) -> None:
    pid = (await executor.run(procfuncs.echo, (), {}))["pid"]
    with pytest.raises(WorkerProcessError, match=rf"pid {pid}\).*exited with code 3"):
        await executor.run(procfuncs.exit_hard, (3,), {})
    assert (await executor.run(procfuncs.echo, (), {}))["pid"] != pid


async def test_timeout_kills_the_worker(scheduler: AsyncScheduler, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    run = await run_once(
        scheduler, procfuncs.sleep, args=[60, str(pid_file)], timeout=0.5, id="slow"
    )
    assert run.outcome is RunOutcome.TIMEOUT
    await wait_dead(int(pid_file.read_text()))
    after = await run_once(scheduler, procfuncs.echo)
    assert after.outcome is RunOutcome.SUCCESS, after.error
    assert after.result["pid"] != int(pid_file.read_text())


async def test_cancelled_call_kills_its_worker(executor: ProcessExecutor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    with anyio.move_on_after(0.5) as scope:
        await executor.run(procfuncs.sleep, (60, str(pid_file)), {})
    assert scope.cancelled_caught
    await wait_dead(int(pid_file.read_text()))


async def test_max_workers_bounds_concurrency(scheduler: AsyncScheduler, tmp_path: Path) -> None:
    names = [f"job{i}" for i in range(5)]
    for name in names:
        await scheduler.add_job(
            procfuncs.stamp, args=[str(tmp_path), name, 0.2], executor="process", id=name
        )
    with anyio.fail_after(20):
        await wait_idle(scheduler)
    spans: list[tuple[float, float]] = []
    pids = set()
    for name in names:
        (run,) = await scheduler.get_runs(name)
        assert run.outcome is RunOutcome.SUCCESS, run.error
        start, end, pid = (tmp_path / name).read_text().split()
        spans.append((float(start), float(end)))
        pids.add(int(pid))
    most = max(sum(1 for s, e in spans if s <= at < e) for at, _ in spans)
    assert most <= 2
    assert len(pids) <= 2


async def test_non_importable_callables_are_refused_at_add_job(
    scheduler: AsyncScheduler,
) -> None:
    def nested() -> None: ...

    with pytest.raises(InvalidCallableError, match="lambda"):
        await scheduler.add_job(lambda: None, executor="process")
    with pytest.raises(InvalidCallableError, match="inside a function"):
        await scheduler.add_job(nested, executor="process")
    with pytest.raises(InvalidCallableError, match="bound to an instance"):
        await scheduler.add_job(scheduler.pause, executor="process")
    assert await scheduler.get_jobs() == []


async def test_values_the_serializer_refuses_fail_the_run(scheduler: AsyncScheduler) -> None:
    run = await run_once(scheduler, procfuncs.echo, args=[1, object()])
    assert run.outcome is RunOutcome.ERROR
    assert run.error is not None
    assert "args[1]: cannot store" in run.error
    run = await run_once(scheduler, procfuncs.returns_object)
    assert run.outcome is RunOutcome.ERROR
    assert run.error is not None
    assert "result: cannot store" in run.error


async def test_serializer_errors_direct(executor: ProcessExecutor) -> None:
    with pytest.raises(SerializationError, match=r"kwargs\['x'\]|kwargs.x"):
        await executor.run(procfuncs.echo, (), {"x": object()})


async def test_no_process_until_a_run_and_stop_ends_them() -> None:
    before = alive_pids()
    executor = ProcessExecutor(2)
    await executor.start()
    assert alive_pids() == before
    pid = (await executor.run(procfuncs.echo, (), {}))["pid"]
    assert pid in alive_pids()
    with anyio.fail_after(10):
        await executor.stop()
    assert pid not in alive_pids()


async def test_stop_kills_a_hung_worker_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_module, "_STOP_GRACE", 0.2)
    executor = ProcessExecutor(1)
    await executor.start()
    pid_file = tmp_path / "pid"
    failures: list[BaseException] = []

    async def hang() -> None:
        try:
            await executor.run(procfuncs.sleep, (60, str(pid_file)), {})
        except WorkerProcessError as exc:
            failures.append(exc)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hang)
            await eventually(lambda: pid_file.exists() and bool(pid_file.read_text()), "start")
            await executor.stop()
    assert "killed by SIGKILL" in str(failures[0])
    await wait_dead(int(pid_file.read_text()))


async def test_run_before_start_is_refused() -> None:
    with pytest.raises(HoraeError, match="not started"):
        await ProcessExecutor(1).run(procfuncs.echo, (), {})


def test_constructor_checks_its_arguments() -> None:
    assert ProcessExecutor().max_workers == (os.cpu_count() or 1)
    assert repr(ProcessExecutor(3)) == "ProcessExecutor(max_workers=3)"
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(JobArgumentError, match="max_workers"):
            ProcessExecutor(bad)  # type: ignore[arg-type]
    with pytest.raises(JobArgumentError, match="serializer: 'json' is not a serializer"):
        ProcessExecutor(2, serializer="json")  # type: ignore[arg-type]


def test_check_refuses_what_cannot_be_imported_back() -> None:
    executor = ProcessExecutor(1)
    executor.check(procfuncs.echo)
    with pytest.raises(InvalidCallableError):
        executor.check(lambda: None)


def test_check_refuses_what_was_defined_interactively(monkeypatch: pytest.MonkeyPatch) -> None:
    interactive = types.ModuleType("__main__")
    exec("def typed_in(): pass", interactive.__dict__)
    monkeypatch.setitem(sys.modules, "__main__", interactive)
    with pytest.raises(InvalidCallableError, match="'__main__:typed_in' was defined interactively"):
        ProcessExecutor(1).check(interactive.typed_in)


async def test_shutdown_without_waiting_kills_running_workers(
    clock: FakeClock, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    executors = {"process": ProcessExecutor(1)}
    with anyio.fail_after(10):
        async with AsyncScheduler(clock=clock, executors=executors) as scheduler:
            await scheduler.add_job(
                procfuncs.sleep, args=[60, str(pid_file)], executor="process", id="long"
            )
            await eventually(lambda: pid_file.exists() and bool(pid_file.read_text()), "start")
            await scheduler.shutdown(wait=False)
    await wait_dead(int(pid_file.read_text()))


if not sys.platform.startswith("linux"):
    pytestmark = [pytest.mark.anyio, pytest.mark.skip(reason="uses /proc and signals")]
