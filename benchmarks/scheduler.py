"""How fast AsyncScheduler adds and runs jobs on the memory store, beside APScheduler 3 and 4.

Not part of the test run. APScheduler 3 and 4 share the package name ``apscheduler``, so
they live in two virtualenvs; this script is a driver that runs every measurement in a
fresh subprocess with the right interpreter and prints one table:

    python3 -m venv /work/benchvenv
    /work/benchvenv/bin/pip install -e . 'apscheduler==3.11.*'
    python3 -m venv /work/benchvenv4
    /work/benchvenv4/bin/pip install -e . --pre 'apscheduler==4.0.0a6'
    /work/benchvenv/bin/python benchmarks/scheduler.py --aps4-python /work/benchvenv4/bin/python

``--horae-python`` and ``--aps3-python`` default to the interpreter running the driver;
``--aps4-python`` (or ``HORAE_BENCH_APS4_PYTHON``) has no default. A library that is
missing from its interpreter shows "n/a". ``--impl NAME --measure WHAT`` runs a single
measurement and prints it as JSON (what the driver calls).

Rows:

- ``add_job`` on a started scheduler, n interval jobs an hour apart (none fires): jobs/s
  at 1k, 10k and 100k, and microseconds per add (horae's memory store is a heap, so
  the cost grows as log n).
- A burst of 10k no-op coroutine jobs all due at once (date trigger in the past, added
  while paused or not started): runs/s from resume until the last run finished, counted
  by a listener on EVENT_JOB_EXECUTED (APScheduler 4: JobReleased). "Raw limit": bare
  asyncio creating and awaiting 10k no-op tasks, and the same with an anyio task group.
- Lateness (actual start - scheduled time, measured inside the job) of 1,000 interval
  jobs firing every second on the real clock, the first second discarded: once with the
  jobs' phases spread over the second, once with all 1,000 due at the same instant.
  horae reads ``current_run().scheduled_time``, APScheduler 4 ``current_job``'s
  ``scheduled_fire_time``, APScheduler 3 the run time its EVENT_JOB_SUBMITTED event
  gives (published before the job's task starts).

Targets: horae at 100k adds >= 2x APScheduler 3, the 10k burst >= 2x APScheduler 3
(>= 100k runs/s the aim), lateness p99 < 5 ms with 1,000 jobs firing each second.
Options, misfire and coalescing rules are each library's defaults except
``misfire_grace_time=None`` (nothing is dropped as missed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
IMPLS = ("horae", "aps3", "aps4")
ADD_SIZES = (1_000, 10_000, 100_000)
BURST_SIZE = 10_000
LATENESS_JOBS = 1_000

Result = dict[str, Any]


# ---------------------------------------------------------------- shared job state
# Job functions live at module level: APScheduler 4 stores tasks by reference.

_count = 0
_target = 0
_done: Any = None  # an anyio.Event or asyncio.Event set when _count reaches _target
_samples: list[float] = []
_warmup_until = 0.0
_measure_until = 0.0
_aps3_scheduled: dict[str, float] = {}


async def noop() -> None:
    """The job of the add and burst rows."""


def _count_one(_: object = None) -> None:
    global _count
    _count += 1
    if _count == _target:
        _done.set()


def _sample(scheduled: float) -> None:
    lateness = time.time() - scheduled
    if _warmup_until <= scheduled < _measure_until:
        _samples.append(lateness)


async def horae_late_job() -> None:
    from horae import current_run

    _sample(current_run().scheduled_time.timestamp())


async def aps4_late_job() -> None:
    from apscheduler import current_job

    fire_time = current_job.get().scheduled_fire_time
    assert fire_time is not None
    _sample(fire_time.timestamp())


async def aps3_late_job(job_id: str) -> None:
    _sample(_aps3_scheduled[job_id])


def _timed_out(start: float, budget: float) -> bool:
    return time.perf_counter() - start > budget


def _starts(jobs: int, spread: bool, seconds: float) -> tuple[list[datetime], float]:
    """Each job's first fire time, and how long to let the scheduler run.

    The first whole second at least 1.5 s away is the first fire time of the first job
    (the others follow within the second when ``spread``); runs of the next second are
    warm-up, the following ``seconds`` are measured, and the scheduler stops half a
    second after that so that every measured run has finished.
    """
    global _measure_until, _warmup_until
    first = math.ceil(time.time() + 1.5)
    _warmup_until = first + 1
    _measure_until = _warmup_until + seconds
    step = 1 / jobs if spread else 0
    starts = [datetime.fromtimestamp(first + i * step, UTC) for i in range(jobs)]
    return starts, _measure_until + 0.5


def _lateness_result(seconds: float) -> Result:
    samples = sorted(_samples)
    if not samples:
        return {"error": "no run finished"}

    def q(p: float) -> float:
        return samples[min(len(samples) - 1, int(p * len(samples)))] * 1000

    return {
        "p50_ms": q(0.50),
        "p99_ms": q(0.99),
        "max_ms": samples[-1] * 1000,
        "samples": len(samples),
        "expected": int(LATENESS_JOBS * seconds),
    }


# -------------------------------------------------------------------------- horae


async def horae_add(n: int, budget: float) -> Result:
    from horae import AsyncScheduler

    async with AsyncScheduler() as scheduler:
        gc.collect()
        start = time.perf_counter()
        added = 0
        while added < n:
            for _ in range(min(1000, n - added)):
                await scheduler.add_job(noop, "interval", hours=1)
            added = min(n, added + 1000)
            if _timed_out(start, budget):
                break
        elapsed = time.perf_counter() - start
        await scheduler.shutdown(wait=False)
    return {"count": added, "seconds": elapsed}


async def horae_burst(n: int, budget: float) -> Result:
    import anyio

    from horae import EVENT_JOB_EXECUTED, AsyncScheduler

    global _done, _target
    _done, _target = anyio.Event(), n
    async with AsyncScheduler() as scheduler:
        scheduler.add_listener(_count_one, EVENT_JOB_EXECUTED)
        await scheduler.pause()
        past = datetime.now(UTC) - timedelta(seconds=1)
        for _ in range(n):
            await scheduler.add_job(noop, "date", run_date=past)
        gc.collect()
        start = time.perf_counter()
        await scheduler.resume()
        with anyio.move_on_after(budget):
            await _done.wait()
        elapsed = time.perf_counter() - start
        await scheduler.shutdown(wait=False)
    return {"count": _count, "seconds": elapsed}


async def horae_lateness(jobs: int, seconds: float, spread: bool) -> Result:
    import anyio

    from horae import AsyncScheduler

    async with AsyncScheduler() as scheduler:
        starts, stop_at = _starts(jobs, spread, seconds)
        for start in starts:
            await scheduler.add_job(
                horae_late_job, "interval", seconds=1, start_date=start, misfire_grace_time=None
            )
        await anyio.sleep(stop_at - time.time())
        await scheduler.shutdown(wait=False)
    return _lateness_result(seconds)


# ------------------------------------------------------------------ APScheduler 3


def _aps3_scheduler() -> Any:
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    return AsyncIOScheduler(jobstores={"default": MemoryJobStore()}, timezone=UTC)


async def aps3_add(n: int, budget: float) -> Result:
    scheduler = _aps3_scheduler()
    scheduler.start()
    gc.collect()
    start = time.perf_counter()
    added = 0
    while added < n:
        for _ in range(min(1000, n - added)):
            scheduler.add_job(noop, "interval", hours=1)
        added = min(n, added + 1000)
        await asyncio.sleep(0)  # as an async caller would: let the loop turn
        if _timed_out(start, budget):
            break
    elapsed = time.perf_counter() - start
    scheduler.shutdown(wait=False)
    return {"count": added, "seconds": elapsed}


async def aps3_burst(n: int, budget: float) -> Result:
    from apscheduler.events import EVENT_JOB_EXECUTED

    global _done, _target
    _done, _target = asyncio.Event(), n
    scheduler = _aps3_scheduler()
    scheduler.add_listener(_count_one, EVENT_JOB_EXECUTED)
    scheduler.start(paused=True)
    past = datetime.now(UTC) - timedelta(seconds=1)
    for _ in range(n):
        scheduler.add_job(noop, "date", run_date=past, misfire_grace_time=None)
    gc.collect()
    start = time.perf_counter()
    scheduler.resume()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(_done.wait(), budget)
    elapsed = time.perf_counter() - start
    scheduler.shutdown(wait=False)
    return {"count": _count, "seconds": elapsed}


async def aps3_lateness(jobs: int, seconds: float, spread: bool) -> Result:
    from apscheduler.events import EVENT_JOB_SUBMITTED

    def submitted(event: Any) -> None:
        _aps3_scheduled[event.job_id] = event.scheduled_run_times[-1].timestamp()

    scheduler = _aps3_scheduler()
    scheduler.add_listener(submitted, EVENT_JOB_SUBMITTED)
    scheduler.start()
    starts, stop_at = _starts(jobs, spread, seconds)
    for i, start in enumerate(starts):
        scheduler.add_job(
            aps3_late_job,
            "interval",
            seconds=1,
            start_date=start,
            args=[f"j{i}"],
            id=f"j{i}",
            misfire_grace_time=None,
        )
    await asyncio.sleep(stop_at - time.time())
    scheduler.shutdown(wait=False)
    return _lateness_result(seconds)


# ------------------------------------------------------------------ APScheduler 4


def _aps4_scheduler() -> Any:
    from apscheduler import AsyncScheduler
    from apscheduler.datastores.memory import MemoryDataStore

    return AsyncScheduler(MemoryDataStore())


async def aps4_add(n: int, budget: float) -> Result:
    from apscheduler.triggers.interval import IntervalTrigger

    async with _aps4_scheduler() as scheduler:
        await scheduler.start_in_background()
        gc.collect()
        start = time.perf_counter()
        added = 0
        while added < n:
            for _ in range(min(1000, n - added)):
                await scheduler.add_schedule(noop, IntervalTrigger(hours=1))
            added = min(n, added + 1000)
            if _timed_out(start, budget):
                break
        elapsed = time.perf_counter() - start
        await scheduler.stop()
    return {"count": added, "seconds": elapsed}


async def aps4_burst(n: int, budget: float) -> Result:
    import anyio
    from apscheduler import JobReleased
    from apscheduler.triggers.date import DateTrigger

    global _done, _target
    _done, _target = anyio.Event(), n
    async with _aps4_scheduler() as scheduler:
        scheduler.subscribe(_count_one, {JobReleased})
        past = datetime.now(UTC) - timedelta(seconds=1)
        for _ in range(n):  # not started yet: nothing runs
            await scheduler.add_schedule(noop, DateTrigger(past), misfire_grace_time=None)
        gc.collect()
        start = time.perf_counter()
        await scheduler.start_in_background()
        with anyio.move_on_after(budget):
            await _done.wait()
        elapsed = time.perf_counter() - start
        await scheduler.stop()
    return {"count": _count, "seconds": elapsed}


async def aps4_lateness(jobs: int, seconds: float, spread: bool) -> Result:
    import anyio
    from apscheduler.triggers.interval import IntervalTrigger

    async with _aps4_scheduler() as scheduler:
        starts, stop_at = _starts(jobs, spread, seconds)
        for start in starts:
            await scheduler.add_schedule(
                aps4_late_job, IntervalTrigger(seconds=1, start_time=start), misfire_grace_time=None
            )
        await scheduler.start_in_background()
        await anyio.sleep(stop_at - time.time())
        await scheduler.stop()
    return _lateness_result(seconds)


# --------------------------------------------------------------------- raw limits


async def asyncio_raw(n: int) -> Result:
    gc.collect()
    start = time.perf_counter()
    tasks = [asyncio.create_task(noop()) for _ in range(n)]
    await asyncio.gather(*tasks)
    return {"count": n, "seconds": time.perf_counter() - start}


async def anyio_raw(n: int) -> Result:
    import anyio

    gc.collect()
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(noop)
    return {"count": n, "seconds": time.perf_counter() - start}


# ------------------------------------------------------------------ one measurement


def _library_version(impl: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    if impl in ("asyncio", "anyio"):
        return platform.python_version()
    try:
        found = version("horae" if impl == "horae" else "apscheduler")
    except PackageNotFoundError:
        raise ImportError(f"not installed in {sys.executable}") from None
    if impl != "horae" and not found.startswith("3." if impl == "aps3" else "4."):
        raise ImportError(f"{sys.executable} has apscheduler {found}")
    return found


def measure(impl: str, what: str, size: int, budget: float, repeat: int, seconds: float) -> Result:
    """Run one measurement in this process (best of ``repeat`` for rates)."""
    global _count
    try:
        version = _library_version(impl)
    except ImportError as exc:
        return {"unavailable": f"{impl}: {exc}"}
    result: Result
    if what == "lateness":
        spread = size > 0
        factory = {"horae": horae_lateness, "aps3": aps3_lateness, "aps4": aps4_lateness}[impl]
        result = _run(lambda: factory(LATENESS_JOBS, seconds, spread))
    else:
        run: Callable[[], Coroutine[Any, Any, Result]]
        if what == "raw":
            fn = {"asyncio": asyncio_raw, "anyio": anyio_raw}[impl]
            run = lambda: fn(size)  # noqa: E731
        else:
            table = {
                ("horae", "add"): horae_add,
                ("horae", "burst"): horae_burst,
                ("aps3", "add"): aps3_add,
                ("aps3", "burst"): aps3_burst,
                ("aps4", "add"): aps4_add,
                ("aps4", "burst"): aps4_burst,
            }
            fn2 = table[impl, what]
            run = lambda: fn2(size, budget)  # noqa: E731
        best: Result | None = None
        for _ in range(repeat):
            _count = 0
            r = _run(run)
            r["rate"] = r["count"] / r["seconds"]
            if best is None or r["rate"] > best["rate"]:
                best = r
            if r["count"] < size:
                break  # out of budget: once is enough
        assert best is not None
        result = best
    result["version"] = version
    return result


def _run(factory: Callable[[], Coroutine[Any, Any, Result]]) -> Result:
    return asyncio.run(factory())


# ------------------------------------------------------------------------- driver


class Driver:
    """Runs measurements in subprocesses and collects their JSON."""

    def __init__(self, pythons: dict[str, str | None], timeout_margin: float = 60) -> None:
        self.pythons = pythons
        self.margin = timeout_margin
        self.versions: dict[str, str] = {}

    def run(
        self,
        impl: str,
        what: str,
        size: int,
        *,
        budget: float = 30,
        repeat: int = 1,
        seconds: float = 10,
    ) -> Result:
        python = self.pythons.get(impl) or self.pythons.get("horae")
        if python is None:
            return {"unavailable": f"{impl}: no interpreter given"}
        if not os.path.exists(python):
            return {"unavailable": f"{impl}: {python} does not exist"}
        cmd = [
            python, os.path.abspath(__file__), "--impl", impl, "--measure", what,
            "--size", str(size), "--budget", str(budget), "--repeat", str(repeat),
            "--seconds", str(seconds),
        ]  # fmt: skip
        print(f"  {impl:<7} {what:<8} {size:>7} ...", end="", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=budget * repeat + seconds + self.margin
            )
        except subprocess.TimeoutExpired:
            print(" timed out", file=sys.stderr)
            return {"error": "timed out"}
        print(f" {time.perf_counter() - started:5.1f} s", file=sys.stderr)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"exit {proc.returncode}: {tail}"}
        result: Result = json.loads(lines[-1])
        if "version" in result:
            self.versions[impl] = result["version"]
        return result


def _rate(r: Result, want: int) -> str:
    if "unavailable" in r:
        return "n/a"
    if "error" in r:
        return "error"
    text = f"{r['rate']:,.0f}"
    if r["count"] < want:
        text += f" ({r['count']:,} in {r['seconds']:.0f}s)"
    return text


def _late(r: Result) -> str:
    if "unavailable" in r:
        return "n/a"
    if "error" in r:
        return "error"
    text = f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"
    if r["samples"] < 0.99 * r["expected"]:
        text += f" ({r['samples']}/{r['expected']} runs)"
    return text


def _ratio(a: Result, b: Result) -> str:
    if "rate" not in a or "rate" not in b:
        return "-"
    return f"{a['rate'] / b['rate']:.2f}x"


def drive(args: argparse.Namespace) -> None:
    pythons: dict[str, str | None] = {
        "horae": args.horae_python,
        "aps3": args.aps3_python,
        "aps4": args.aps4_python,
        "asyncio": args.horae_python,
        "anyio": args.horae_python,
    }
    driver = Driver(pythons)
    add_sizes = (1_000, 10_000) if args.quick else ADD_SIZES
    seconds = 3.0 if args.quick else args.seconds
    aps4_budget = 10.0 if args.quick else args.aps4_budget

    command = [sys.executable, "benchmarks/scheduler.py"]
    for flag, value in (
        ("--horae-python", args.horae_python),
        ("--aps3-python", args.aps3_python),
        ("--aps4-python", args.aps4_python),
    ):
        if value and value != sys.executable:
            command += [flag, value]
    if args.quick:
        command.append("--quick")
    print("measuring (each line one subprocess):", file=sys.stderr)

    adds: dict[tuple[str, int], Result] = {}
    for size in add_sizes:
        for impl in IMPLS:
            budget = aps4_budget if impl == "aps4" else 60.0
            repeat = 3 if size <= 10_000 and impl != "aps4" else 1
            adds[impl, size] = driver.run(impl, "add", size, budget=budget, repeat=repeat)
    bursts = {
        impl: driver.run(
            impl,
            "burst",
            BURST_SIZE,
            budget=aps4_budget if impl == "aps4" else 60.0,
            repeat=1 if impl == "aps4" else 3,
        )
        for impl in IMPLS
    }
    raw = {impl: driver.run(impl, "raw", BURST_SIZE, repeat=5) for impl in ("asyncio", "anyio")}
    late_spread = {impl: driver.run(impl, "lateness", 1, seconds=seconds) for impl in IMPLS}
    late_same = {impl: driver.run(impl, "lateness", 0, seconds=seconds / 2) for impl in IMPLS}

    v = driver.versions
    headers = [
        "",
        f"horae {v.get('horae', '')}".strip(),
        f"APScheduler {v.get('aps3', '3')}",
        f"APScheduler {v.get('aps4', '4')}",
        "horae/APS3",
        "target",
    ]
    rows: list[list[str]] = []
    for size in add_sizes:
        rows.append(
            [f"add_job, {size // 1000}k jobs (jobs/s)"]
            + [_rate(adds[impl, size], size) for impl in IMPLS]
            + [_ratio(adds["horae", size], adds["aps3", size]),
               ">= 2x at 100k" if size == 100_000 else ""]
        )  # fmt: skip
    growth = [f"  us per add_job, {add_sizes[0] // 1000}k -> {add_sizes[-1] // 1000}k"]
    for impl in IMPLS:
        per = [1e6 / adds[impl, s]["rate"] for s in add_sizes if "rate" in adds[impl, s]]
        growth.append(" -> ".join(f"{p:.1f}" for p in per))
    rows.append([*growth, "", "horae ~flat (log n)"])
    rows.append(
        [f"burst of {BURST_SIZE // 1000}k due no-op jobs (runs/s)"]
        + [_rate(bursts[impl], BURST_SIZE) for impl in IMPLS]
        + [_ratio(bursts["horae"], bursts["aps3"]), ">= 2x, aim 100k/s"]
    )
    rows.append(
        [f"  raw limit: asyncio {BURST_SIZE // 1000}k tasks (tasks/s)",
         _rate(raw["asyncio"], BURST_SIZE), "", "", "", ""]
    )  # fmt: skip
    rows.append(
        [f"  raw limit: anyio task group {BURST_SIZE // 1000}k (tasks/s)",
         _rate(raw["anyio"], BURST_SIZE), "", "", "", ""]
    )  # fmt: skip
    rows.append(
        [f"lateness p50 / p99 ms, {LATENESS_JOBS} jobs @1s spread"]
        + [_late(late_spread[impl]) for impl in IMPLS]
        + ["", "p99 < 5 ms"]
    )
    rows.append(
        [f"lateness p50 / p99 ms, {LATENESS_JOBS} jobs @1s same instant"]
        + [_late(late_same[impl]) for impl in IMPLS]
        + ["", ""]
    )

    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    print()
    print("horae scheduler benchmark, memory store")
    print(f"reproduce: {shlex.join(command)}")
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, {datetime.now():%Y-%m-%d %H:%M}"
    )
    print()
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print()
    print(
        f"APScheduler 4 runs get at most {aps4_budget:.0f} s each; '(n in s)' is what it "
        "managed. Lateness: first second discarded; APScheduler 4 max_concurrent_jobs=100 "
        "(its default)."
    )
    problems = {
        f"{impl} {what}": r.get("unavailable") or r.get("error")
        for what, results in (
            ("add", {f"{i} {s}": r for (i, s), r in adds.items()}),
            ("burst", bursts),
            ("lateness", {**late_spread, **{f"{i} same": r for i, r in late_same.items()}}),
        )
        for impl, r in results.items()
        if "unavailable" in r or "error" in r
    }
    for name, why in problems.items():
        print(f"  {name}: {why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--horae-python", default=os.environ.get("HORAE_BENCH_PYTHON", sys.executable)
    )
    parser.add_argument(
        "--aps3-python", default=os.environ.get("HORAE_BENCH_APS3_PYTHON", sys.executable)
    )
    parser.add_argument("--aps4-python", default=os.environ.get("HORAE_BENCH_APS4_PYTHON"))
    parser.add_argument("--aps4-budget", type=float, default=20.0, help="seconds per APS4 run")
    parser.add_argument("--seconds", type=float, default=10.0, help="lateness run length")
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs")
    parser.add_argument("--impl", choices=(*IMPLS, "asyncio", "anyio"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", choices=("add", "burst", "raw", "lateness"))
    parser.add_argument("--size", type=int, default=0)
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    if args.impl:
        result = measure(args.impl, args.measure, args.size, args.budget, args.repeat, args.seconds)
        print(json.dumps(result))
    else:
        drive(args)


if __name__ == "__main__":
    main()
