"""Make docs/images/dashboard.png, the README's screenshot of the dashboard's jobs page.

    python docs/images/dashboard_screenshot.py   # needs horae[dashboard], playwright, chromium

A scheduler on a memory store with a few jobs (each run once, one failing), the
dashboard on a free port, and headless Chromium (``/usr/bin/chromium``, or
``$HORAE_CHROMIUM``) taking the picture.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import types
from datetime import datetime, timezone
from pathlib import Path

import uvicorn
from playwright.async_api import async_playwright

from horae import AsyncScheduler, JobError, JobExecuted
from horae.dashboard import create_app

OUT = Path(__file__).resolve().parent / "dashboard.png"


def module(name: str, **funcs: object) -> None:
    """Register functions under a module name, so that jobs show tidy references."""
    mod = types.ModuleType(name)
    for attr, func in funcs.items():
        func.__module__ = name  # type: ignore[attr-defined]
        func.__qualname__ = attr  # type: ignore[attr-defined]
        setattr(mod, attr, func)
    sys.modules[name] = mod


async def send_digest() -> None:
    await asyncio.sleep(0.05)


async def sync_invoices() -> int:
    await asyncio.sleep(0.2)
    return 42


async def warm() -> None:
    await asyncio.sleep(0.01)


async def import_orders() -> None:
    raise ConnectionError("orders API answered 502 Bad Gateway")


async def purge_sessions() -> None:
    pass


module("reports", send_digest=send_digest)
module("billing.tasks", sync_invoices=sync_invoices)
module("cache", warm=warm)
module("etl.orders", import_orders=import_orders)
module("auth.maintenance", purge_sessions=purge_sessions)


async def main() -> None:
    async with AsyncScheduler(timezone="Europe/Paris", scheduler_id="web-1-4242-a1b2c3") as s:
        await s.add_job(send_digest, "cron", day_of_week="mon-fri", hour=8, id="daily-digest")
        await s.add_job(sync_invoices, "interval", minutes=15, id="sync-invoices")
        await s.add_job(warm, "interval", minutes=5, id="warm-cache")
        await s.add_job(import_orders, "cron", minute="*/30", id="import-orders")
        await s.add_job(purge_sessions, "cron", hour=3, id="purge-sessions")
        async with s.subscribe(JobExecuted, JobError) as events:
            for job_id in ("sync-invoices", "warm-cache", "import-orders", "daily-digest"):
                await s.modify_job(job_id, next_run_time=datetime.now(timezone.utc))
            done = 0
            async for _ in events:
                done += 1
                if done == 4:
                    break
        await s.pause_job("purge-sessions", note="paused during the session store migration")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(create_app(s), port=port, log_level="warning", lifespan="on")
        )
        task = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.05)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=os.environ.get("HORAE_CHROMIUM", "/usr/bin/chromium")
            )
            page = await browser.new_page(viewport={"width": 1280, "height": 520})
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.wait_for_selector("#live.ok")
            await page.screenshot(path=str(OUT))
            await browser.close()
        server.should_exit = True
        await task
    print(f"wrote {OUT} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    asyncio.run(main())
