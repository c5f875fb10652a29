"""horae in a Tornado app: Tornado runs on asyncio, so the scheduler shares its loop.

Run it with ``python examples/tornado_app.py`` (``pip install tornado``), then
``curl -X POST localhost:8888/jobs/cleanup`` and ``curl localhost:8888/jobs/cleanup``.
"""

from __future__ import annotations

import asyncio
import json

import tornado.web

from horae import AsyncScheduler


async def cleanup(target: str) -> str:
    """The job: a coroutine, so it runs on Tornado's own event loop."""
    await asyncio.sleep(0.01)
    return f"cleaned {target}"


class JobHandler(tornado.web.RequestHandler):
    def initialize(self, scheduler: AsyncScheduler) -> None:
        self.scheduler = scheduler

    async def post(self, name: str) -> None:
        job = await self.scheduler.add_job(
            cleanup, "interval", seconds=0.5, args=[name], id=name, replace_existing=True
        )
        self.set_status(201)
        self.write({"id": job.id, "next_run_time": str(job.next_run_time)})

    async def get(self, name: str) -> None:
        runs = await self.scheduler.get_runs(name)
        self.set_header("content-type", "application/json")
        self.write(json.dumps([{"outcome": run.outcome, "result": run.result} for run in runs]))


def make_app(scheduler: AsyncScheduler) -> tornado.web.Application:
    return tornado.web.Application([(r"/jobs/(\w+)", JobHandler, {"scheduler": scheduler})])


async def main(port: int = 8888) -> None:
    # The scheduler starts before the server and stops after it, jobs finished.
    async with AsyncScheduler() as scheduler:
        server = make_app(scheduler).listen(port)
        try:
            await asyncio.Event().wait()  # serve until Ctrl+C
        finally:
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
