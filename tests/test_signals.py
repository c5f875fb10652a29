"""SIGTERM and SIGINT stop a scheduler process gracefully (real processes, real signals)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from horae import RunOutcome, SQLiteStore
from horae.stores.base import StoreContext

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def _start(db: Path, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.signal_worker", str(db), mode],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _stop_with(process: subprocess.Popen[str], signum: int) -> tuple[int, str, float]:
    """Wait for the job to start, send ``signum``; return exit code, output, seconds."""
    assert process.stdout is not None
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "job started" in line:
                break
        else:
            pytest.fail("the worker exited before its job started:\n" + "".join(lines))
        sent = time.monotonic()
        process.send_signal(signum)
        rest, _ = process.communicate(timeout=20)
        return process.returncode, "".join(lines) + rest, time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _runs(db: Path) -> list[tuple[RunOutcome | None, str]]:
    store = SQLiteStore(db)
    await store.start(StoreContext(scheduler_id="reader", wakeup=lambda: None, publish=print))
    try:
        return [(r.outcome, r.error or "") for r in await store.get_runs("stuck")]
    finally:
        await store.stop()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_run_forever_stops_gracefully_on_a_signal(tmp_path: Path, signum: int) -> None:
    db = tmp_path / "jobs.db"
    code, output, seconds = await anyio.to_thread.run_sync(_stop_with, _start(db, "async"), signum)
    assert code == 0, output
    assert "received; stopping" in output
    assert "stopped" in output.splitlines()[-1]
    assert seconds < 15  # the grace is 0.2 s: it did not wait for the job
    ((outcome, error),) = await _runs(db)
    assert outcome is RunOutcome.ABANDONED
    assert "shut down" in error


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_blocking_facade_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    code, output, _ = await anyio.to_thread.run_sync(_stop_with, _start(db, "sync"), signal.SIGTERM)
    assert code == 0, output
    assert "stopping (waiting up to 0.2 s" in output
    ((outcome, _error),) = await _runs(db)
    # The thread outlives the grace period: its run is recorded at once.
    assert outcome is RunOutcome.ABANDONED
