"""horae in a plain asyncio or trio program: ``async with`` owns the scheduler.

Run it with ``python examples/plain_async.py`` (asyncio) or
``python examples/plain_async.py trio`` (``pip install trio``). It prints a few job
results, then stops the scheduler and exits.
"""

from __future__ import annotations

import hashlib
import sys

import anyio

from horae import AsyncScheduler, JobError, JobExecuted


async def poll(source: str) -> str:
    """A coroutine job: runs in the program's event loop, on asyncio or trio alike."""
    await anyio.sleep(0.01)  # a real poller would await a network call here
    return f"polled {source}"


def checksum(text: str) -> str:
    """A sync job: runs in a worker thread, so hashing never blocks the loop."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


async def main(scheduler: AsyncScheduler | None = None, *, results: int = 4) -> list[str]:
    """Run two interval jobs until ``results`` runs have finished; return what they gave."""
    scheduler = scheduler if scheduler is not None else AsyncScheduler()
    done: list[str] = []
    async with scheduler:
        await scheduler.add_job(poll, "interval", seconds=1, args=["inbox"], id="poll")
        await scheduler.add_job(checksum, "interval", seconds=1, args=["horae"], id="checksum")
        async with scheduler.subscribe(JobExecuted, JobError) as events:
            async for event in events:
                line = f"{event.job_id}: {getattr(event, 'result', None)!r}"
                print(line, flush=True)
                done.append(line)
                if len(done) >= results:
                    break
    # Leaving ``async with`` waited for running jobs and stopped the scheduler.
    print("stopped", flush=True)
    return done


if __name__ == "__main__":
    if sys.argv[1:] == ["trio"]:
        import trio

        trio.run(main)
    else:
        import asyncio

        asyncio.run(main())
