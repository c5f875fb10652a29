"""Development sessions: ``python3 -m nox -s tests`` (the whole suite), ``lint``,
``typecheck``, ``docs``, ``demo``, ``bench``."""

from __future__ import annotations

import os

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests", "lint", "typecheck"]

PYPROJECT = nox.project.load_toml("pyproject.toml")


def group(name: str) -> list[str]:
    return nox.project.dependency_groups(PYPROJECT, name)


@nox.session(python=False, name="services")
def services(session: nox.Session) -> None:
    """Print the PostgreSQL and Redis addresses the store tests use."""
    for var, default in (
        ("HORAE_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"),
        ("HORAE_REDIS_URL", "redis://127.0.0.1:6379/0"),
    ):
        session.log(f"{var}={os.environ.get(var, default)}")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (on asyncio and trio)."""
    session.install("-e", ".[postgres,redis,metrics,dashboard,otel]", *group("test"))
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install(*group("lint"))
    paths = ["src", "tests", "benchmarks", "examples", "docs/_hooks", "docs/images"]
    session.run("ruff", "check", *paths, "noxfile.py")
    session.run("ruff", "format", "--check", *paths)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".[postgres,redis,metrics,dashboard,otel]", *group("typecheck"))
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site (MkDocs, strict) into build/site."""
    session.install("-e", ".", *group("docs"))
    # NO_MKDOCS_2_WARNING: Material's banner about MkDocs 2, printed on every build.
    session.run(
        "mkdocs", "build", "--strict", "--site-dir", "build/site", *session.posargs,
        env={"NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip


@nox.session
def demo(session: nox.Session) -> None:
    """A real scheduler firing a few kinds of jobs for a few seconds, printing its events."""
    session.install("-e", ".")
    session.run("python", "examples/demo.py")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks beside APScheduler 3.11, APScheduler 4.0.0a6 and croniter.

    APScheduler 3 and 4 are both the ``apscheduler`` package, so APScheduler 4 gets an
    environment of its own, which the benchmark scripts run as a subprocess. The store
    benchmark needs PostgreSQL and Redis (``HORAE_POSTGRES_DSN``, ``HORAE_REDIS_URL``) and
    the drivers of every library it compares; none of them is a dependency of horae.
    """
    session.install(
        "-e", ".", "apscheduler==3.11.*", "croniter",
        # horae's PostgreSQL and Redis stores, APScheduler 3's SQLAlchemyJobStore (SQLite,
        # PostgreSQL) and RedisJobStore, and the profiler of `stores.py --profile-dir`.
        "asyncpg", "redis", "sqlalchemy", "psycopg2-binary", "pyinstrument",
    )  # fmt: skip
    aps4 = os.path.join(session.create_tmp(), "aps4")
    session.run("python", "-m", "venv", aps4)
    aps4_python = os.path.join(aps4, "bin", "python")
    session.run(
        aps4_python, "-m", "pip", "install", "-q", "-e", ".", "--pre", "apscheduler==4.0.0a6",
        # SQLAlchemyDataStore on asyncpg. 4.0.0a6 predates the anyio releases whose
        # start_soon() needs a running task, which its asyncpg event broker calls from an
        # asyncpg callback: pin the anyio it was released with (and sniffio, which it uses).
        "sqlalchemy[asyncio]", "asyncpg", "anyio==4.9.0", "sniffio",
    )  # fmt: skip
    env = {"HORAE_BENCH_APS4_PYTHON": aps4_python}
    session.run("python", "benchmarks/triggers.py")
    session.run("python", "benchmarks/scheduler.py", env=env)
    session.run("python", "benchmarks/stores.py", *session.posargs, env=env)
    session.run("python", "benchmarks/listings.py", env=env)
