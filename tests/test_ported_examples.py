"""The APScheduler 3 programs ported in examples/aps3_*.py run and do what they say.

Each runs as a subprocess in a temporary directory, as a user would run it, bounded in
time; ``HORAE_EXAMPLE_SECONDS`` makes the long-running ones stop by themselves.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def _env(seconds: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    env.pop("HORAE_EXAMPLE_SECONDS", None)
    if seconds is not None:
        env["HORAE_EXAMPLE_SECONDS"] = seconds
    return env


def _run(name: str, cwd: Path, seconds: str | None) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        cwd=cwd,
        env=_env(seconds),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_blocking_runs_interval_and_cron_jobs_then_stops(tmp_path: Path) -> None:
    out = _run("aps3_blocking.py", tmp_path, "3").splitlines()
    assert sum(line.startswith("tick ") for line in out) >= 2
    assert any(line.startswith("report ") for line in out)  # cron second="*/2"
    assert out[-1] == "stopped"


def test_blocking_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "aps3_blocking.py")],
        cwd=tmp_path,
        env=_env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the interval job's first run, at start
        assert first.startswith("tick "), first
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert rest.splitlines()[-1] == "stopped"


def test_background_keeps_job_and_runs_in_sqlite(tmp_path: Path) -> None:
    out = _run("aps3_background.py", tmp_path, "2.5")
    assert "jobs in the store: ['fetch']" in out
    first = [line for line in out.splitlines() if line.startswith("run ")]
    assert first, out
    assert all(line.endswith("success 'fetched feed'") for line in first)
    assert (tmp_path / "jobs.sqlite").exists()
    # A second start on the same file replaces the job and sees the earlier runs too.
    started = time.monotonic()
    out = _run("aps3_background.py", tmp_path, "1.5")
    assert time.monotonic() - started < 20
    assert "jobs in the store: ['fetch']" in out
    second = [line for line in out.splitlines() if line.startswith("run ")]
    assert len(second) > len(first)


def test_listener_sees_executions_and_errors(tmp_path: Path) -> None:
    out = _run("aps3_listener.py", tmp_path, "10").splitlines()
    assert "add returned 5" in out
    assert "divide crashed: ZeroDivisionError('division by zero')" in out
    assert out[-1].startswith("executed: "), out
    executed, errors = (int(part.split(": ")[1]) for part in out[-1].split(", "))
    assert executed >= 1
    assert errors >= 1
