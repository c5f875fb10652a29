"""Executors: where a job's callable runs."""

from __future__ import annotations

from horae.executors.async_ import AsyncExecutor
from horae.executors.base import Executor
from horae.executors.process import ProcessExecutor, WorkerProcessError
from horae.executors.thread import ThreadExecutor

__all__ = ["AsyncExecutor", "Executor", "ProcessExecutor", "ThreadExecutor", "WorkerProcessError"]
