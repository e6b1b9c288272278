"""Worker processes for the CPU-bound work, on pebble's ProcessPool (per-task timeouts, dead workers replaced).

A job that runs past its timeout, or that kills its process, takes down only its own worker: pebble
stops that one process (SIGTERM, then SIGKILL: C code in a decoder may ignore the first) and starts a
replacement, never disturbing the jobs running beside it, which would otherwise be retried and pushed
towards the delivery limit through no fault of their own. Every worker, first or replacement, imports
the heavy modules in pebble's initializer before it takes a job, and says so on a semaphore: `start`
returns once all `size` workers have, so the first job is not slowed by the imports.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.synchronize import Semaphore
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessFuture, ProcessPool

from common.app.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")

WARM_UP_LIMIT = 120.0
"""Seconds `start` waits for a worker to report warm: start-up fails loudly rather than hang on a broken import."""


class JobTimedOut(Exception):
    """The job ran longer than its timeout; its worker process was stopped and replaced."""


class WorkerLost(Exception):
    """The worker process died under the job (crash, out of memory, killed, pool stopped)."""


def warm_up(warmed: Semaphore) -> None:
    """Pebble's initializer: import the heavy modules once per process, then report the worker warm."""
    import processor_service.imaging  # noqa: F401

    warmed.release()


class WorkerPool:
    """`size` worker processes; `run` sends one call to a free one with its timeout."""

    def __init__(self, size: int) -> None:
        self.size = size
        # spawn: the service has threads (asyncio.to_thread, pebble's own), which fork would copy half-way.
        context = multiprocessing.get_context("spawn")
        self._warmed = context.Semaphore(0)
        self._pool = ProcessPool(max_workers=size, initializer=warm_up, initargs=(self._warmed,), context=context)
        self._futures: set[ProcessFuture[Any]] = set()
        self.closed = False

    async def start(self) -> None:
        """Start every worker process and return once each has warmed up."""
        if not self._pool.active:  # pebble starts its workers on first use; this is that use
            raise RuntimeError("worker pool failed to start")
        for _ in range(self.size):
            if not await asyncio.to_thread(self._warmed.acquire, True, WARM_UP_LIMIT):
                raise RuntimeError(f"a worker process did not warm up within {WARM_UP_LIMIT:g} s")

    @property
    def healthy(self) -> bool:
        """Open, and pebble's pool still running (its manager threads alive)."""
        return not self.closed and self._pool.active

    async def run(self, fn: Callable[..., T], *args: object, timeout: float) -> T:
        """`fn(*args)` in a worker process; raise JobTimedOut or WorkerLost when it does not come back.

        An exception raised by `fn` itself comes back as is, and the worker stays.
        """
        if self.closed:
            raise RuntimeError("worker pool is closed")
        try:
            future = self._pool.schedule(fn, args=args, timeout=timeout)
        except RuntimeError as exc:  # pebble refuses work once one of its manager threads has died
            raise WorkerLost(f"worker pool is broken: {exc}") from exc
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        try:
            return await asyncio.wrap_future(future)
        except TimeoutError as exc:
            raise JobTimedOut(f"no result after {timeout:g} s; worker process stopped") from exc
        except (ProcessExpired, BrokenProcessPool) as exc:
            raise WorkerLost(f"worker process died while processing: {exc}") from exc
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.closed and task is not None and not task.cancelling():
                raise WorkerLost("worker pool closed while processing") from None
            raise  # our caller was cancelled: wrap_future cancelled the task, pebble stops its worker

    async def close(self) -> None:
        """Stop every worker process and wait until they are gone (in-flight calls end with WorkerLost)."""
        if self.closed:
            return
        self.closed = True
        for future in list(self._futures):
            future.cancel()
        self._pool.stop()
        await asyncio.to_thread(self._pool.join)
        log.info("worker_pool_closed")
