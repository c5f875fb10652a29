"""horae in a FastAPI app: the scheduler lives in the app's lifespan, request handlers
add jobs, and ``GET /events`` streams what the jobs did as server-sent events.

Run it (``pip install fastapi uvicorn`` next to horae)::

    uvicorn fastapi_app:app --app-dir examples

or ``python examples/fastapi_app.py``. Then, in another terminal::

    curl -N localhost:8000/events                      # leave it open
    curl -X POST localhost:8000/greetings -H 'content-type: application/json' \\
         -d '{"name": "Ada", "every": 2}'
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from horae import AsyncScheduler, Event, JobError, JobExecuted


async def greet(name: str) -> str:
    """The job: a coroutine, so it runs in the app's own event loop."""
    return f"hello, {name}"


class Greeting(BaseModel):
    name: str
    every: float = Field(default=5.0, gt=0, description="seconds between greetings")


def to_sse(event: Event) -> str:
    """One server-sent event: its type on the ``event:`` line, its fields as JSON."""
    data: dict[str, Any] = {"job_id": getattr(event, "job_id", None)}
    data["scheduled_time"] = getattr(event, "scheduled_time", event.timestamp).isoformat()
    if isinstance(event, JobExecuted):
        kind, data["result"] = "executed", event.result
    elif isinstance(event, JobError):
        kind, data["error"] = "error", event.traceback.strip().splitlines()[-1]
    else:
        kind = type(event).__name__
    return f"event: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


def create_app(scheduler: AsyncScheduler | None = None) -> FastAPI:
    """The app; tests pass a scheduler of their own (with a fake clock, say)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The scheduler starts with the app and stops with it, running jobs included.
        async with app.state.scheduler:
            yield

    app = FastAPI(lifespan=lifespan)
    app.state.scheduler = scheduler if scheduler is not None else AsyncScheduler()

    @app.post("/greetings", status_code=201)
    async def schedule_greeting(greeting: Greeting, request: Request) -> dict[str, Any]:
        scheduler: AsyncScheduler = request.app.state.scheduler
        job = await scheduler.add_job(
            greet,
            "interval",
            seconds=greeting.every,
            args=[greeting.name],
            id=f"greet-{greeting.name}",
            replace_existing=True,
        )
        return {"id": job.id, "next_run_time": job.next_run_time}

    @app.get("/events")
    async def stream_events(request: Request, limit: int | None = None) -> StreamingResponse:
        """Job results as they happen; ``limit`` ends the stream after that many events."""
        scheduler: AsyncScheduler = request.app.state.scheduler

        async def events() -> AsyncIterator[str]:
            async with scheduler.subscribe(JobExecuted, JobError) as subscription:
                yield ": subscribed\n\n"  # a comment line: sends the headers at once
                sent = 0
                async for event in subscription:
                    yield to_sse(event)
                    sent += 1
                    if sent == limit:
                        break

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


app = create_app()

if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app)
