"""Taking jobs from one queue only while there is room for them: one delivery at a time, never a hoard.

Why not a prefetch of N and a requeue of what does not fit: a quorum queue counts a returned message
toward `x-delivery-limit` (RabbitMQ 3.13 counts every return; 4.3 counts `basic.reject` and not
`basic.nack`, and may change again), after which the broker parks it. A job that is merely waiting for
room must never be parked, so admission never returns a message: a job that does not fit is *held*,
un-started and unacknowledged, until running jobs release enough. And why not a plain prefetch: the
broker sends up to the prefetch at once, before the processor has seen any job's cost, so a small
processor would sit on jobs that a larger one could run now.

So the processor asks for one job at a time. Its channel has a prefetch of 1 per consumer, and a
*lane* is one consumer tag: it is opened when the processor has room for another job, and cancelled as
soon as its one delivery arrives (its prefetch of 1 means nothing else can come on it meanwhile). The
next lane opens only once that job is decided, and only while the processor:

- is not paused for overload (`Admission.paused`),
- has a free CPU slot,
- holds no job of this queue that does not fit (while holding one, it takes no more from this queue).

A finished job frees room, which opens the next lane, so a busy processor pulls its next job as soon as
it can run one: jobs are assigned by the workers' own capacity, never pushed to one that has no room.
Each queue has its own intake, so a held large job does not stop small jobs of the standard queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)

from common.app.logs import get_logger
from common.app.settings import BaseServiceSettings
from common.messaging.broker import BROKER_ERRORS, declare_queue, open_channel
from common.messaging.consuming import RawHandler, handle_delivery
from common.messaging.faults import DeliveryLost
from processor_service.admission import Admission

log = get_logger(__name__)

RETRY_SECONDS = 1.0
"""Wait before trying again to open or cancel a lane that failed (the broker connection is being restored)."""


class Intake:
    """The lanes of one job queue: opened and cancelled to match the processor's room (see the module doc)."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        settings: BaseServiceSettings,
        queue_name: str,
        admission: Admission,
    ) -> None:
        self.connection = connection
        self.settings = settings
        self.queue_name = queue_name
        self.admission = admission
        self.holding = 0
        """Jobs of this queue delivered here that wait, un-started, for room."""
        self._handler: RawHandler | None = None
        self._channel: AbstractChannel | None = None
        self._queue: AbstractQueue | None = None
        self._lane: str | None = None
        self._spent: set[str] = set()
        self._undecided: set[int] = set()
        self._closing = False
        self._kicked = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, handler: RawHandler) -> None:
        """Open the channel (prefetch 1 per consumer), declare the queue there and start taking jobs."""
        self._handler = handler
        self._channel = await open_channel(self.connection, prefetch=1)
        # A lane cannot open while the channel is down, and nothing else would ask again once it is back (a broker
        # restart with no job in hand): its reopening is the event that opens the next lane.
        if isinstance(self._channel, AbstractRobustChannel):
            self._channel.reopen_callbacks.add(lambda *_: self.kick())
        self._queue = await declare_queue(self._channel, self.settings, self.queue_name)
        self._task = asyncio.create_task(self._keep_lanes())
        self.kick()

    def kick(self) -> None:
        """Something changed (a reservation, a release, a pause): open or cancel the lane to match."""
        self._kicked.set()

    def wants_a_job(self) -> bool:
        """True when this queue may deliver one more job here now."""
        return (
            not self._closing
            and self.holding == 0
            and not self._undecided
            and self.admission.has_slot()
            and self._channel is not None
            and not self._channel.is_closed
        )

    async def _keep_lanes(self) -> None:
        while True:
            await self._kicked.wait()
            self._kicked.clear()
            try:
                await self._match()
            except (*BROKER_ERRORS, RuntimeError) as exc:  # a channel being restored: try again shortly
                log.warning("intake_lane_failed", queue=self.queue_name, error=repr(exc)[:300])
                await asyncio.sleep(RETRY_SECONDS)
                self.kick()

    async def _match(self) -> None:
        assert self._queue is not None
        if self.wants_a_job() and self._lane is None:
            tag = await self._queue.consume(self._on_message)
            if tag in self._spent:  # its delivery came before `consume` returned
                self._spent.discard(tag)
            else:
                self._lane = tag
        elif not self.wants_a_job() and self._lane is not None:
            tag, self._lane = self._lane, None
            await self._queue.cancel(tag)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        assert self._queue is not None and self._handler is not None
        tag = message.consumer_tag
        if tag is not None and tag == self._lane:
            self._lane = None
        elif tag is not None:
            self._spent.add(tag)
        self._undecided.add(id(message))
        try:
            if tag is not None:
                with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                    await self._queue.cancel(tag)  # one delivery per lane
            await handle_delivery(message, self._handler, max_delay=self.settings.retry_max_delay)
        finally:
            self.decided(message)

    def decided(self, message: AbstractIncomingMessage) -> None:
        """The delivery is started, held or settled: the next lane may open (if there is room)."""
        if id(message) in self._undecided:
            self._undecided.discard(id(message))
            self.kick()

    @contextlib.asynccontextmanager
    async def admitted(self, cost: int, message: AbstractIncomingMessage) -> AsyncIterator[None]:
        """Hold the job until `cost` bytes fit, reserve them while the body runs, release them after.

        Raises DeliveryLost (nothing reserved) if the delivery's channel closes while the job is held: the
        broker gives the job to another processor."""
        if not self.admission.try_reserve(cost):
            self.holding += 1
            self.decided(message)
            log.info("job_held", queue=self.queue_name, cost_bytes=cost, reserved_bytes=self.admission.reserved_bytes)
            try:
                admitted = await self.admission.reserve(cost, still_wanted=lambda: not message.channel.is_closed)
            finally:
                self.holding -= 1
                self.kick()
            if not admitted:
                raise DeliveryLost("the held job's delivery is gone (its channel closed)")
        self.decided(message)
        try:
            yield
        finally:
            self.admission.release(cost)

    def attached(self) -> bool:
        """The channel is open (a lane is opened on it whenever there is room)."""
        return self._channel is not None and not self._channel.is_closed

    async def stop_taking(self) -> None:
        """Take no more jobs (cancel the open lane); jobs in hand are still settled on the channel."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._lane is not None and self._queue is not None:
            tag, self._lane = self._lane, None
            with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                await asyncio.wait_for(self._queue.cancel(tag), self.settings.shutdown_timeout)

    async def close(self) -> None:
        """Close the channel (unsettled deliveries go back to the queue)."""
        if self._channel is not None:
            with contextlib.suppress(*BROKER_ERRORS, RuntimeError):
                await self._channel.close()
