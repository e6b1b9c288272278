"""Gather items from concurrent deliveries into batches stored in one go; each delivery waits for its batch.

A consumer handler calls `submit(item)` and returns (so the wrapper acks) only once the batch
holding the item is stored: acks never run ahead of the database. A batch closes at `size` items
or `window_ms` after its first item, whichever comes first.

An outage (database or broker down, see `common.messaging.faults`) holds the batch: its store is
tried again with backoff until it succeeds, its deliveries stay unacknowledged meanwhile (so the
consumer, its prefetch full, takes no more) and none is returned to the queue for it. A batch that
fails for another reason is stored again one item at a time, so that only the items that fail on
their own are returned and counted toward parking, not the whole batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from common.app.logs import get_logger
from common.messaging.faults import MAX_RETRY_DELAY, retry_through_outage

log = get_logger(__name__)

T = TypeVar("T")


class Batcher(Generic[T]):
    """Runs `store(batch)` for gathered items, through outages; fails only the items that fail by themselves."""

    def __init__(
        self,
        name: str,
        store: Callable[[list[T]], Awaitable[None]],
        size: int,
        window_ms: float,
        *,
        max_delay: float = MAX_RETRY_DELAY,
    ) -> None:
        self.name = name
        self.store = store
        self.size = size
        self.window = window_ms / 1000
        self.max_delay = max_delay
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

    async def _store_through_outage(self, items: list[T]) -> None:
        await retry_through_outage(lambda: self.store(items), what=f"batch {self.name}", max_delay=self.max_delay)

    async def _store_batch(self, waiting: list[tuple[T, asyncio.Future[None]]]) -> None:
        """Store the batch; if it fails (not an outage), store its items one by one."""
        try:
            await self._store_through_outage([item for item, _ in waiting])
        except Exception as exc:
            if len(waiting) == 1:
                log.exception("batch_failed", batch=self.name, size=1)
                _resolve(waiting[0][1], exc)
                return
            log.warning("batch_split", batch=self.name, size=len(waiting), error=repr(exc)[:300])
            for item, future in waiting:
                try:
                    await self._store_through_outage([item])
                except Exception as item_exc:
                    log.exception("batch_item_failed", batch=self.name)
                    _resolve(future, item_exc)
                else:
                    _resolve(future, None)
        else:
            for _, future in waiting:
                _resolve(future, None)

    async def run(self) -> None:
        """Store batches until cancelled."""
        while True:
            batch = await self._collect()
            waiting = [(item, f) for item, f in batch if not f.done()]  # a cancelled delivery is requeued anyway
            try:
                if waiting:
                    await self._store_batch(waiting)
            except asyncio.CancelledError:
                for _, future in waiting:
                    future.cancel()
                raise
            finally:
                if self.queue.empty():
                    self.idle.set()


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    """Give a waiting delivery its outcome (unless it was cancelled meanwhile)."""
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
