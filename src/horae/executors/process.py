"""The process executor: callables by reference in worker processes of its own.

Each worker is a ``multiprocessing`` process started with the ``spawn`` method (a fresh
interpreter: safe beside threads and event loops, and the same on every platform) and
joined to the executor by a pipe. A call sends the callable's ``"module:qualname"``
reference and its arguments as text written by the executor's serializer; the worker
imports the callable, calls it and sends back the result as text, or the exception.

The executor keeps its own small pool rather than ``concurrent.futures``: there one dead
worker breaks the whole pool and fails every run in it, and a call cannot be stopped.
Here a worker that dies fails only the run it was running, with the exit cause, and a
call that is cancelled (a timeout, a shutdown without waiting) kills its worker. A
worker that is gone is not replaced at once: the next run that finds no idle worker
starts a fresh one, so no process exists until a run needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import multiprocessing
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

import anyio
import anyio.to_thread

from horae._execution import _current_run, _run_traceparent
from horae.errors import HoraeError, InvalidCallableError, JobArgumentError
from horae.jobs import Run
from horae.refs import callable_to_ref, ref_to_callable
from horae.serializers import JSONSerializer, Serializer

logger = logging.getLogger(__name__)

__all__ = ["ProcessExecutor", "WorkerProcessError"]

#: How long ``stop()`` lets workers finish before it kills them (seconds).
_STOP_GRACE = 2.0

# What a worker sends back: ("ok", result text) or
# ("error", pickled exception or None, "Type: message", traceback text).
_Reply = tuple[Any, ...]


class WorkerProcessError(HoraeError, RuntimeError):
    """A run in a worker process failed in a way its callable did not raise.

    The worker died while running it (the message gives the exit code or the signal),
    or the callable's exception could not be carried back to the scheduler (the message
    gives its type and text, and the worker's traceback is the exception's cause).
    """


class _RemoteTraceback(Exception):
    """Carries the worker's traceback text, as the cause of the exception re-raised here."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class ProcessExecutor:
    """Runs callables, by reference, in at most ``max_workers`` worker processes.

    Only a module-level function (or a static or class method) can be run, as the worker
    imports it again by its ``"module:qualname"`` reference: a lambda, a nested function
    or a bound method is refused when the job is added. A coroutine function is run with
    ``asyncio.run`` in the worker. Arguments go to the worker, and the return value comes
    back, as text written by ``serializer``, so they must be values it stores (a
    persistent store has checked the arguments when the job was added; with the memory
    store a value it cannot store fails the run). ``current_run()`` works in the job.

    Workers are started when a run needs one and kept for the next runs. A worker that
    dies during a run (a crash, ``os._exit``, a kill) fails that run with
    :class:`WorkerProcessError` naming the exit code or signal; a run that is cancelled
    (its timeout, a shutdown that does not wait) kills its worker. Either way the next run
    gets a fresh worker. Workers are daemon processes, so a job here cannot itself start
    ``multiprocessing`` processes (``subprocess`` is fine).

    Example::

        scheduler = AsyncScheduler(executors={"process": ProcessExecutor(4)})
        await scheduler.add_job(crunch, "interval", minutes=5, executor="process")

    Args:
        max_workers: how many worker processes may run at the same time (default: the
            number of CPUs).
        serializer: how arguments and results cross to and from the worker
            (``JSONSerializer()`` by default; give the store's serializer when it has
            registered types). It is pickled to each worker once, when the worker starts.
    """

    def __init__(
        self, max_workers: int | None = None, *, serializer: Serializer | None = None
    ) -> None:
        if max_workers is None:
            max_workers = os.cpu_count() or 1
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise JobArgumentError(
                f"max_workers: {max_workers!r} is not allowed; give a whole number of at least 1"
            )
        if serializer is None:
            serializer = JSONSerializer()
        elif not (
            callable(getattr(serializer, "dumps", None))
            and callable(getattr(serializer, "loads", None))
        ):
            raise JobArgumentError(
                f"serializer: {serializer!r} is not a serializer (JSONSerializer, "
                "PickleSerializer or another object with dumps() and loads())"
            )
        self.max_workers = max_workers
        self.serializer = serializer
        self._context = multiprocessing.get_context("spawn")
        self._slots: anyio.CapacityLimiter | None = None
        self._threads: anyio.CapacityLimiter | None = None
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()

    def __repr__(self) -> str:
        return f"ProcessExecutor(max_workers={self.max_workers})"

    async def start(self) -> None:
        """Create the capacity limits; no process is started until a run needs one."""
        self._slots = anyio.CapacityLimiter(self.max_workers)
        # The threads that wait on the workers' pipes have a limit of their own, so
        # that they never wait behind other users of anyio's default thread limit.
        self._threads = anyio.CapacityLimiter(self.max_workers)

    async def stop(self) -> None:
        """Ask idle workers to exit; kill, after a short grace, whatever is still running.

        A worker still busy with a run (the scheduler stops its executors after its runs
        have ended, so only a run awaited by someone else) gets the grace to finish; then
        it is killed and its run fails with :class:`WorkerProcessError`.
        """
        idle = list(self._idle)
        busy = [worker for worker in self._workers if worker not in idle]
        self._workers.clear()
        self._idle.clear()
        self._slots = self._threads = None
        if idle or busy:
            await anyio.to_thread.run_sync(_shut_down, idle, busy, _STOP_GRACE)

    def check(self, func: Callable[..., Any]) -> None:
        """Raise ``InvalidCallableError`` unless a worker can import ``func`` by reference."""
        ref = callable_to_ref(func)
        # A worker re-runs the main module only when it is a file (the spawn method's
        # rule); what was defined at an interactive prompt or by ``python -c`` is not there.
        if ref.startswith("__main__:") and not getattr(sys.modules["__main__"], "__file__", None):
            raise InvalidCallableError(
                f"{ref!r} was defined interactively, which a worker process cannot import; "
                "define it in a module"
            )

    async def run(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> Any:
        """Call ``func(*args, **kwargs)`` in a worker process and return its value.

        Raises:
            InvalidCallableError: ``func`` has no importable reference.
            SerializationError: an argument or the result is not a value the serializer
                stores (its path is in the message).
            WorkerProcessError: the worker died during the call.
            HoraeError: the executor is not started.
            Exception: what the callable raised (or :class:`WorkerProcessError` with its
                type and text if it cannot be carried back).
        """
        slots, threads = self._slots, self._threads
        if slots is None or threads is None:
            raise HoraeError(f"{self!r} is not started; start() it (the scheduler does) first")
        message = (
            callable_to_ref(func),
            self.serializer.dumps(list(args), "args"),
            self.serializer.dumps(dict(kwargs), "kwargs"),
            _current_run.get(None),
            _run_traceparent.get(),
        )
        async with slots:
            worker = await self._take_worker(threads)
            reusable = False
            try:
                reply = await anyio.to_thread.run_sync(
                    worker.exchange, message, abandon_on_cancel=True, limiter=threads
                )
                reusable = True
            finally:
                if reusable and worker in self._workers:
                    self._idle.append(worker)
                elif reusable:
                    # The executor was stopped during the call: this worker is the last
                    # one to go. (No thread uses its pipe any more.)
                    with contextlib.suppress(OSError):
                        worker.connection.send(None)
                    worker.connection.close()
                else:
                    # Cancelled (the thread waiting on the pipe is abandoned and sees the
                    # pipe close) or the worker died: either way it is not used again.
                    self._workers.discard(worker)
                    worker.process.kill()
        return self._result(reply)

    async def _take_worker(self, threads: anyio.CapacityLimiter) -> _Worker:
        while self._idle:
            worker = self._idle.pop()
            if worker.process.is_alive():
                return worker
            self._workers.discard(worker)
            logger.warning(
                "a process executor worker (pid %s) died while idle (%s); starting another",
                worker.process.pid,
                _exit_cause(worker.process.exitcode),
            )
        # Starting a process takes milliseconds (the worker imports in its own time), so
        # it is not abandoned on cancellation: the worker is then known and killed.
        worker = await anyio.to_thread.run_sync(
            _Worker, self._context, self.serializer, limiter=threads
        )
        self._workers.add(worker)
        return worker

    def _result(self, reply: _Reply) -> Any:
        if reply[0] == "ok":
            return self.serializer.loads(reply[1])
        _, pickled, summary, remote_traceback = reply
        exc: BaseException | None = None
        if pickled is not None:
            try:
                exc = pickle.loads(pickled)
            except Exception:
                exc = None
        if not isinstance(exc, BaseException):
            exc = WorkerProcessError(f"the job raised {summary} in its worker process")
        raise exc from _RemoteTraceback(remote_traceback)


class _Worker:
    """One worker process and the scheduler's end of its pipe."""

    __slots__ = ("connection", "process")

    def __init__(self, context: Any, serializer: Serializer) -> None:
        connection, child_end = context.Pipe()
        self.process: multiprocessing.process.BaseProcess = context.Process(
            target=_serve,
            args=(child_end, serializer),
            name="horae-process-worker",
            daemon=True,
        )
        self.process.start()
        # Only the worker holds its end now, so its death reads as end-of-file here.
        child_end.close()
        self.connection: Connection = connection

    def exchange(self, message: tuple[Any, ...]) -> _Reply:
        """Send one call and wait for its reply (in a thread)."""
        try:
            self.connection.send(message)
            reply: _Reply = self.connection.recv()
        except (EOFError, OSError):
            self.process.join(_STOP_GRACE)
            self.connection.close()
            raise WorkerProcessError(
                f"the worker process (pid {self.process.pid}) running the job died: "
                f"{_exit_cause(self.process.exitcode)}; the next run gets a fresh worker"
            ) from None
        return reply


def _exit_cause(exitcode: int | None) -> str:
    if exitcode is None:
        return "it closed its pipe but has not exited"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exited with code {exitcode}"


def _shut_down(idle: list[_Worker], busy: list[_Worker], grace: float) -> None:
    """Stop workers (in a thread). Only idle workers' pipes are used here: a busy one's
    pipe belongs to the thread of its run, which sees it close and reaps the worker."""
    deadline = time.monotonic() + grace
    for worker in idle:
        # A worker that is dead already is reaped below.
        with contextlib.suppress(OSError):
            worker.connection.send(None)
    for worker in idle:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            logger.warning(
                "an idle process executor worker (pid %s) did not exit within %g s of "
                "stop(); killing it",
                worker.process.pid,
                grace,
            )
            worker.process.kill()
            worker.process.join()
        worker.connection.close()
    if busy:
        time.sleep(max(0.0, deadline - time.monotonic()))
    for worker in busy:
        if worker.process.exitcode is None:
            logger.warning(
                "a process executor worker (pid %s) was still running a job %g s after "
                "stop(); killing it",
                worker.process.pid,
                grace,
            )
            worker.process.kill()


# What runs in the worker process.


def _serve(connection: Connection, serializer: Serializer) -> None:
    """A worker's loop: one call at a time until told to stop or the scheduler is gone."""
    # Ctrl-C reaches the whole process group; the scheduler decides what its workers do.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        reply = _call(serializer, *message)
        try:
            connection.send(reply)
        except OSError:
            return


def _call(
    serializer: Serializer,
    ref: str,
    args: str,
    kwargs: str,
    run: Run | None,
    traceparent: str | None,
) -> _Reply:
    token = _current_run.set(run) if run is not None else None
    traced: contextlib.ExitStack | None = None
    try:
        if traceparent is not None:
            # The run is traced (horae.tracing): its span is the job's remote parent here.
            traced = _enter_trace(traceparent)
        func = ref_to_callable(ref)
        result = func(*serializer.loads(args), **serializer.loads(kwargs))
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return ("ok", serializer.dumps(result, "result"))
    except BaseException as exc:
        try:
            pickled: bytes | None = pickle.dumps(exc)
        except Exception:
            pickled = None
        return ("error", pickled, f"{type(exc).__qualname__}: {exc}", traceback.format_exc())
    finally:
        if traced is not None:
            traced.close()
        if token is not None:
            _current_run.reset(token)


def _enter_trace(traceparent: str) -> contextlib.ExitStack:
    """Make the run's span (in the scheduler's process) the parent of what the job traces.

    Only a traced run sends a traceparent, and tracing needs the OpenTelemetry API, so it
    is there in the worker too (the same environment).
    """
    from horae.tracing import _remote_parent

    stack = contextlib.ExitStack()
    token = _run_traceparent.set(traceparent)
    stack.callback(_run_traceparent.reset, token)
    stack.enter_context(_remote_parent(traceparent))
    return stack
