"""Worker processes for the CPU-bound work, each one killable on its own.

The pool is `size` single-process executors rather than one executor of `size` processes: a job
that hangs or crashes its process takes down only that process, never the jobs running beside it
(which would otherwise be retried and pushed towards the delivery limit through no fault of their
own). A timed-out process is killed (SIGKILL: C code in a decoder ignores anything gentler) and
replaced by a fresh, warmed-up one before its slot takes another job.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from common.app.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")


class JobTimedOut(Exception):
    """The job ran longer than its timeout; its worker process was killed."""


class WorkerLost(Exception):
    """The worker process died under the job (crash, out of memory, killed)."""


def warm_up() -> None:
    """Import the heavy modules once per process so the first job is not slowed by them."""
    import processor_service.imaging  # noqa: F401


class WorkerPool:
    """`size` worker processes; `run` sends one call to a free one and enforces the timeout."""

    def __init__(self, size: int) -> None:
        self.size = size
        # spawn: the service has threads (asyncio.to_thread), which fork would copy half-way.
        self._context = multiprocessing.get_context("spawn")
        self._free: asyncio.Queue[ProcessPoolExecutor] = asyncio.Queue()
        self._all: set[ProcessPoolExecutor] = set()
        self._renewals: set[asyncio.Task[None]] = set()
        self.closed = False

    def _new_executor(self) -> ProcessPoolExecutor:
        executor = ProcessPoolExecutor(max_workers=1, mp_context=self._context)
        self._all.add(executor)
        return executor

    async def _warm(self, executor: ProcessPoolExecutor) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(executor, warm_up)
        except BrokenProcessPool:
            log.warning("worker_warm_up_failed")  # the next job on it fails over to another renewal

    async def start(self) -> None:
        """Start and warm every worker process."""
        executors = [self._new_executor() for _ in range(self.size)]
        await asyncio.gather(*(self._warm(executor) for executor in executors))
        for executor in executors:
            self._free.put_nowait(executor)

    def _kill(self, executor: ProcessPoolExecutor) -> None:
        self._all.discard(executor)
        processes = list((executor._processes or {}).values())  # no public API to stop a busy worker
        for process in processes:
            with contextlib.suppress(ProcessLookupError, OSError):
                process.kill()
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=1)

    async def _renew(self) -> None:
        executor = self._new_executor()
        await self._warm(executor)
        if self.closed:
            self._kill(executor)
        else:
            self._free.put_nowait(executor)

    def _replace(self, executor: ProcessPoolExecutor) -> None:
        self._kill(executor)
        if not self.closed:
            task = asyncio.get_running_loop().create_task(self._renew())
            self._renewals.add(task)
            task.add_done_callback(self._renewals.discard)

    async def run(self, fn: Callable[..., T], *args: object, timeout: float) -> T:
        """`fn(*args)` in a worker process; raise JobTimedOut or WorkerLost when it does not come back."""
        if self.closed:
            raise RuntimeError("worker pool is closed")
        executor = await self._free.get()
        reusable = False
        try:
            future = asyncio.get_running_loop().run_in_executor(executor, fn, *args)
            try:
                result = await asyncio.wait_for(future, timeout)
            except TimeoutError as exc:
                raise JobTimedOut(f"no result after {timeout:g} s; worker process killed") from exc
            except BrokenProcessPool as exc:
                raise WorkerLost("worker process died while processing") from exc
            except Exception:
                reusable = True  # raised inside the worker: the process itself is fine
                raise
            reusable = True
            return result
        finally:
            if reusable:
                self._free.put_nowait(executor)
            else:  # timed out, died or cancelled: the process may still be busy, so it goes
                self._replace(executor)

    async def close(self) -> None:
        """Kill every worker process (in-flight calls end with WorkerLost)."""
        self.closed = True
        for task in list(self._renewals):
            task.cancel()
        await asyncio.gather(*self._renewals, return_exceptions=True)
        for executor in list(self._all):
            self._kill(executor)
