"""Worker processes for the CPU-bound work, on pebble's ProcessPool (per-task timeouts, dead workers replaced).

A job that runs past its timeout, or that kills its process, takes down only its own worker: pebble
stops that one process (SIGTERM, then SIGKILL: C code in a decoder may ignore the first) and starts a
replacement, never disturbing the jobs running beside it, which would otherwise be retried and pushed
towards the delivery limit through no fault of their own. Every worker, first or replacement, imports
the heavy modules in pebble's initializer before it takes a job, and says so on a semaphore: `start`
returns once all `size` workers have, so the first job is not slowed by the imports. The same
initializer ties each worker to the processor (`processor_service.lifeline`): a processor killed
outright takes its workers with it instead of leaving them as orphans.

pebble gives up on its whole pool when a worker dies while no task is known to be running on any
worker (an idle worker killed, or one that dies before its pool has seen it take its task): it fails
the tasks it knows of and may leave others waiting forever. So a waiting call checks the pool every
PATROL_SECONDS and ends with WorkerLost (the job goes back to the queue), and the next call replaces
the broken pool with a fresh, warmed-up one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.synchronize import Semaphore
from typing import Any, TypeVar

from pebble import ProcessExpired, ProcessFuture, ProcessPool

from common.app.logs import get_logger
from processor_service.lifeline import tie_to_parent

log = get_logger(__name__)

T = TypeVar("T")

WARM_UP_LIMIT = 120.0
"""Seconds `start` waits for a worker to report warm: start-up fails loudly rather than hang on a broken import."""


PATROL_SECONDS = 1.0
"""How often a waiting call checks that pebble has not given up on its pool (which would leave the call hanging)."""


class JobTimedOut(Exception):
    """The job ran longer than its timeout; its worker process was stopped and replaced."""


class WorkerLost(Exception):
    """The worker process died under the job (crash, out of memory, killed, pool stopped)."""


def warm_up(warmed: Semaphore, parent_pid: int) -> None:
    """Pebble's initializer: end with the processor `parent_pid`, import the heavy modules once per process,
    then report the worker warm."""
    tie_to_parent(parent_pid)
    import processor_service.imaging  # noqa: F401

    warmed.release()


class WorkerPool:
    """`size` worker processes; `run` sends one call to a free one with its timeout."""

    def __init__(self, size: int) -> None:
        self.size = size
        # spawn: the service has threads (asyncio.to_thread, pebble's own), which fork would copy half-way.
        self._context = multiprocessing.get_context("spawn")
        self._pool, self._warmed = self._new_pool()
        self._replacing = asyncio.Lock()
        self._futures: set[ProcessFuture[Any]] = set()
        self.closed = False

    def _new_pool(self) -> tuple[ProcessPool, Semaphore]:
        warmed = self._context.Semaphore(0)  # one per pool: a replaced worker's release must not count for the next
        pool = ProcessPool(
            max_workers=self.size, initializer=warm_up, initargs=(warmed, os.getpid()), context=self._context
        )
        return pool, warmed

    async def start(self) -> None:
        """Start every worker process and return once each has warmed up."""
        if not self._pool.active:  # pebble starts its workers on first use; this is that use
            raise RuntimeError("worker pool failed to start")
        for _ in range(self.size):
            if not await asyncio.to_thread(self._warmed.acquire, True, WARM_UP_LIMIT):
                raise RuntimeError(f"a worker process did not warm up within {WARM_UP_LIMIT:g} s")

    async def _working_pool(self) -> ProcessPool:
        """pebble's pool, first replaced by a fresh, warmed-up one if pebble has given up on it."""
        async with self._replacing:
            if not self.closed and not self._pool.active:
                log.warning("worker_pool_replaced", reason="pebble gave up on its pool")
                broken = self._pool
                self._pool, self._warmed = self._new_pool()
                broken.stop()
                await asyncio.to_thread(broken.join)
                await self.start()
            return self._pool

    async def run(self, fn: Callable[..., T], *args: object, timeout: float) -> T:
        """`fn(*args)` in a worker process; raise JobTimedOut or WorkerLost when it does not come back.

        An exception raised by `fn` itself comes back as is, and the worker stays.
        """
        if self.closed:
            raise RuntimeError("worker pool is closed")
        pool = await self._working_pool()
        try:
            future = pool.schedule(fn, args=args, timeout=timeout)
        except RuntimeError as exc:  # pebble refuses work once one of its manager threads has died
            raise WorkerLost(f"worker pool is broken: {exc}") from exc
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)
        waiting = asyncio.wrap_future(future)
        try:
            while not waiting.done():
                await asyncio.wait({waiting}, timeout=PATROL_SECONDS)
                if not waiting.done() and not pool.active:  # pebble gave up on its pool: the task would never end
                    raise WorkerLost("worker pool broke while processing")
            return waiting.result()
        except TimeoutError as exc:
            raise JobTimedOut(f"no result after {timeout:g} s; worker process stopped") from exc
        except (ProcessExpired, BrokenProcessPool) as exc:
            raise WorkerLost(f"worker process died while processing: {exc}") from exc
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.closed and task is not None and not task.cancelling():
                raise WorkerLost("worker pool closed while processing") from None
            raise
        finally:
            if not waiting.done():  # our caller was cancelled, or the pool broke: pebble stops the task's worker
                waiting.cancel()

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
