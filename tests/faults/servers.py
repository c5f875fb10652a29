"""Throwaway servers the fault suite may stop, restart and kill.

Never the shared servers of the other store tests (5432, 6379): a Redis server on port
6390 that keeps its data in an append-only file (so a restart brings the data back), and
a PostgreSQL cluster made with ``initdb`` in a temporary directory, on port 5440. Each is
stopped by its pid, and its directory removed, by whoever started it (a ``finally``).

A missing binary skips the tests that need it, or fails them under
``HORAE_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..services import REQUIRED

REDIS_PORT = 6390
POSTGRES_PORT = 5440
HOST = "127.0.0.1"


def missing(what: str) -> None:
    """Skip (or fail, under HORAE_REQUIRE_SERVICES=1) because ``what`` is not installed."""
    message = f"the fault suite needs {what}, which is not installed"
    if REQUIRED:
        pytest.fail(f"{message}; HORAE_REQUIRE_SERVICES=1 forbids skipping", pytrace=False)
    pytest.skip(message)


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((HOST, port)) != 0


def _wait_until(check: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_pid(pid: int, sig: int = signal.SIGKILL, wait: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
    deadline = time.monotonic() + wait
    while _pid_alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return
        time.sleep(0.02)


# ------------------------------------------------------------------------- Redis


class RedisServer:
    """``redis-server`` on port 6390 with appendonly/appendfsync always in a temp dir."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.url = f"redis://{HOST}:{REDIS_PORT}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not _port_free(REDIS_PORT):
            raise RuntimeError(f"port {REDIS_PORT} is in use: another fault suite is running?")
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(REDIS_PORT),
                "--bind",
                HOST,
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _wait_until(self._answers, "redis-server answering on 6390")

    def _answers(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"redis-server exited: {self.log_tail()}")
        try:
            with socket.create_connection((HOST, REDIS_PORT), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop it cleanly (SIGTERM: it writes its append-only file, no data is lost)."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(self, size: int = 2000) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server")
    assert binary is not None
    directory = Path(tempfile.mkdtemp(prefix="horae-faults-redis-"))
    server = RedisServer(binary, directory)
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(directory, ignore_errors=True)


# -------------------------------------------------------------------- PostgreSQL


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    """A cluster made with ``initdb`` in a temp dir, served on port 5440 (trust auth)."""

    def __init__(self, bindir: Path, directory: Path) -> None:
        self.bindir = bindir
        self.directory = directory
        self.data = directory / "data"
        self.dsn = f"postgresql://postgres@{HOST}:{POSTGRES_PORT}/postgres"
        self.pid: int | None = None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            # initdb and pg_ctl refuse to run as root.
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        if not _port_free(POSTGRES_PORT):
            raise RuntimeError(f"port {POSTGRES_PORT} is in use: another fault suite is running?")
        options = (
            f"-p {POSTGRES_PORT} -k {self.directory} -c listen_addresses={HOST} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        result = self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "postgres.log"),
            "-w",
            "-t",
            "60",
            "start",
            check=False,
        )
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            self.pid = int(pid_file.read_text().split()[0])
        if result.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {result.stdout}{result.stderr}")

    def stop(self) -> None:
        """Stop it as ``pg_ctl stop -m fast`` does: connections are cut, data is kept."""
        pid, self.pid = self.pid, None
        if pid is None:
            return
        result = self._run(
            "pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "30", "stop", check=False
        )
        if result.returncode != 0 or _pid_alive(pid):
            _kill_pid(pid)

    def log_tail(self, size: int = 2000) -> str:
        path = self.directory / "postgres.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bindir = _postgres_bin()
    if bindir is None:
        missing("PostgreSQL's initdb and pg_ctl")
    assert bindir is not None
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing("runuser (to run initdb as the postgres user)")
    directory = Path(tempfile.mkdtemp(prefix="horae-faults-pg-"))
    server = PostgresServer(bindir, directory)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
