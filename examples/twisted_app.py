"""horae in a Twisted program, on Twisted's asyncio reactor.

With ``asyncioreactor`` installed, Twisted and the scheduler share one asyncio loop: jobs
may await Deferreds (through ``Deferred.asFuture``) and Twisted code may await the
scheduler (through ``Deferred.fromFuture``). Run it with ``python examples/twisted_app.py``
(``pip install twisted``); it prints a few job results and exits.
"""

from __future__ import annotations

import asyncio

from twisted.internet.defer import Deferred


async def lookup(name: str) -> str:
    """The job: a coroutine on the shared loop that awaits a Twisted Deferred."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    answer: Deferred[str] = deferLater(reactor, 0.01, lambda: f"{name} resolved by Twisted")
    return await answer.asFuture(asyncio.get_running_loop())


async def run(results: int = 3) -> list[str]:
    from horae import AsyncScheduler, JobError, JobExecuted

    done: list[str] = []
    async with AsyncScheduler() as scheduler:
        await scheduler.add_job(lookup, "interval", seconds=0.2, args=["example.org"])
        async with scheduler.subscribe(JobExecuted, JobError) as events:
            async for event in events:
                done.append(repr(getattr(event, "result", event)))
                print(done[-1], flush=True)
                if len(done) >= results:
                    break
    return done


def main(reactor: object) -> Deferred[list[str]]:
    # A Twisted entry point driving an asyncio coroutine: wrap it in a Deferred.
    return Deferred.fromFuture(asyncio.ensure_future(run()))


if __name__ == "__main__":
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)  # the loop ensure_future() picks up in main()
    asyncioreactor.install(loop)  # before anything imports the reactor
    from twisted.internet import task

    task.react(main)
