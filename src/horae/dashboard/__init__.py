"""A web dashboard for a horae store: jobs, a 24-hour timeline, run history, schedulers.

Server-rendered HTML with a little inline JavaScript (no build step), on Starlette::

    from horae.dashboard import create_app

    app = create_app(PostgresStore("postgresql://app@db/app"))   # its own client scheduler
    app = create_app(scheduler)                                   # an AsyncScheduler you run

or from the command line: ``horae dashboard --store URL [--host 127.0.0.1 --port 8787]``.
Needs the ``dashboard`` extra (``pip install 'horae[dashboard]'``). See docs/dashboard.md.
"""

from __future__ import annotations

from horae.dashboard._app import create_app, is_loopback

__all__ = ["create_app", "is_loopback"]
