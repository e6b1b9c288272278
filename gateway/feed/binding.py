"""This replica's events queue is bound to `P.events` only while one of its live-feed sockets is open.

Announcements are worth something only to an open socket. A replica with none would receive,
decode and ack every one anyway, costing gateway and RabbitMQ CPU on every uploaded file while
nobody watches. Unbound, RabbitMQ drops an announcement that no replica wants as it routes it
(they are published best-effort, not mandatory). The first socket binds before it is told
`ready`, so it misses nothing it has not been invited to re-read; the last one to leave unbinds.
"""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractExchange, AbstractQueue

from common.app.logs import get_logger
from common.messaging.broker import BROKER_ERRORS

log = get_logger(__name__)


class FeedBinding:
    """Counts this replica's open sockets and keeps the queue bound while there is at least one."""

    def __init__(self, queue: AbstractQueue, exchange: AbstractExchange) -> None:
        self.queue = queue
        self.exchange = exchange
        self.sockets = 0
        self.bound = False
        self._lock = asyncio.Lock()

    async def attach(self) -> None:
        """A socket opens: bind first if it is the only one. Raises a broker error when binding fails."""
        async with self._lock:
            if not self.bound:
                await self.queue.bind(self.exchange)
                self.bound = True
                log.info("events_feed_bound", queue=self.queue.name)
            self.sockets += 1

    async def detach(self) -> None:
        """A socket closed: unbind when it was the last. A failed unbind is logged and tried again next time."""
        async with self._lock:
            self.sockets -= 1
            if self.sockets or not self.bound:
                return
            try:
                await self.queue.unbind(self.exchange)
            except BROKER_ERRORS as exc:
                log.warning("events_feed_unbind_failed", queue=self.queue.name, error=type(exc).__name__)
                return
            self.bound = False
            log.info("events_feed_unbound", queue=self.queue.name)
