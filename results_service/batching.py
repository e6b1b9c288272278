"""Gather items from concurrent deliveries into batches stored in one go; each delivery waits for its batch.

A consumer handler calls `submit(item)` and returns (so the wrapper acks) only once the batch
holding the item is stored: acks never run ahead of the database. A batch closes at `size` items
or `window_ms` after its first item, whichever comes first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from common.app.logs import get_logger

log = get_logger(__name__)

T = TypeVar("T")
_RETRY_DELAYS = (0.5, 1.0, 2.0)


class Batcher(Generic[T]):
    """Runs `store(batch)` for gathered items; a failing store is retried a few times, then fails the batch."""

    def __init__(self, name: str, store: Callable[[list[T]], Awaitable[None]], size: int, window_ms: float) -> None:
        self.name = name
        self.store = store
        self.size = size
        self.window = window_ms / 1000
        self.queue: asyncio.Queue[tuple[T, asyncio.Future[None]]] = asyncio.Queue()
        self.idle = asyncio.Event()  # set when no item waits and no batch is being stored
        self.idle.set()

    async def submit(self, item: T) -> None:
        """Wait until the batch holding `item` is stored (raises what the store raised)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.idle.clear()
        self.queue.put_nowait((item, future))
        await future

    async def _collect(self) -> list[tuple[T, asyncio.Future[None]]]:
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.window
        while len(batch) < self.size:
            if not self.queue.empty():  # what is already waiting joins without a timer
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _store_with_retries(self, items: list[T]) -> None:
        for delay in (*_RETRY_DELAYS, None):
            try:
                await self.store(items)
                return
            except Exception as exc:  # the boundary: the deliveries will be requeued
                if delay is None:
                    raise
                log.warning("batch_retry", batch=self.name, size=len(items), error=str(exc), delay=delay)
                await asyncio.sleep(delay)

    async def run(self) -> None:
        """Store batches until cancelled."""
        while True:
            batch = await self._collect()
            waiting = [(item, f) for item, f in batch if not f.done()]  # a cancelled delivery is requeued anyway
            try:
                if waiting:
                    await self._store_with_retries([item for item, _ in waiting])
            except asyncio.CancelledError:
                for _, future in waiting:
                    future.cancel()
                raise
            except Exception as exc:
                log.exception("batch_failed", batch=self.name, size=len(waiting))
                for _, future in waiting:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in waiting:
                    if not future.done():
                        future.set_result(None)
            finally:
                if self.queue.empty():
                    self.idle.set()
