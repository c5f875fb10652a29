"""The blocking facade in a gevent program (``monkey.patch_all()``).

Under monkey-patching the facade's thread is a greenlet: the scheduler's event loop
waits on gevent's hub, and sync jobs run in greenlets too, so they must cooperate
(patched sockets and ``time.sleep`` do; CPU-bound work stalls every greenlet while it
runs). Run it with ``python examples/gevent_app.py`` (``pip install gevent``); it exits
after a few runs.
"""

from gevent import monkey

monkey.patch_all()  # first, before anything else imports socket, threading, ssl...

import threading  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

from horae import EVENT_JOB_EXECUTED, Event, JobExecuted, Scheduler  # noqa: E402


def fetch(n: int) -> str:
    """A sync job: ``time.sleep`` is patched, so other greenlets run meanwhile."""
    time.sleep(0.05)
    return f"fetched {n}"


def main(runs: int = 3) -> list[str]:
    results: list[str] = []
    enough = threading.Event()  # patched: waiting on it yields to the hub

    def on_executed(event: Event) -> None:
        if isinstance(event, JobExecuted):
            results.append(event.result)
            if len(results) >= runs:
                enough.set()

    scheduler = Scheduler()
    scheduler.add_listener(on_executed, EVENT_JOB_EXECUTED)
    scheduler.start()
    scheduler.add_job(fetch, "interval", seconds=0.2, args=[1], id="fetch")
    ticks = gevent.spawn(lambda: [gevent.sleep(0.05) for _ in range(1000)])  # other work
    enough.wait(timeout=30)
    scheduler.shutdown()
    print("other greenlet still running:", not ticks.dead, flush=True)
    ticks.kill()
    print("\n".join(results), flush=True)
    return results


if __name__ == "__main__":
    main()
