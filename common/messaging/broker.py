"""RabbitMQ topology and the three ways services touch it: connect, publish (confirmed), consume.

Every name starts with the settings' `amqp_prefix` (P):

- exchange `P` (topic): jobs `job.standard` → quorum queue `P.jobs`, `job.large` → `P.jobs.large`,
  and both keys also → quorum queue `P.queued`, results_service's copy of every job: one confirmed
  publish puts the job in its jobs queue and the copy beside it, so results_service moves the
  instance to `queued` from a fact the broker holds, never from what the publisher remembers.
  `P.queued` has no dead-letter exchange: a copy that cannot be applied is dropped after the
  delivery limit (a dead copy says nothing about processing), and the reconciler republishes the job
  of an instance still `received`. Results `result.<status>` → quorum queue `P.results`; status
  events of the workers (`status.<status>`) → quorum queue `P.status` (results_service). Audit
  records that could not be written at once (`audit.<action>`) → quorum queue `P.audit`
  (results_service writes them, in order). Workers' heartbeats (`worker.heartbeat`, transient: not persistent,
  each expiring) → one exclusive, auto-delete, bounded classic queue per results_service replica (`P.workers.<replica>`,
  declared by that replica with `declare_heartbeat_queue`), so every replica hears every worker.
- exchange `P.events` (fanout): the status changes results_service has committed, announced for
  the live feeds; each gateway replica binds its own exclusive queue. Nothing of results_service
  reads it, so its announcements never come back to it.
- exchange `P.dlx` (fanout): whatever the other quorum queues dead-letter (rejected without requeue, or
  redelivered more than `job_delivery_limit` times) → `P.parked` (operators list and replay it)
  and `P.deadletters` (results_service marks the instance failed). The original routing key
  travels with the message, so a replay goes back where it came from.

Declaring is idempotent, so every service declares the whole topology at start-up.
`python -m common.messaging.broker` does the same for `make setup`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aio_pika
import aio_pika.exceptions
from aio_pika import RobustConnection
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiohttp import web
from yarl import URL

from common.app.logs import current_correlation_id, get_logger
from common.app.settings import BaseServiceSettings
from common.messaging.backoff import backoff_delays, spread
from common.messaging.faults import BROKER_ERRORS as BROKER_ERRORS  # re-exported: defined with the other faults

log = get_logger(__name__)

CORRELATION_AMQP_HEADER = "x-correlation-id"
JOB_STANDARD = "job.standard"
JOB_LARGE = "job.large"
RESULT_PATTERN = "result.#"
STATUS_PATTERN = "status.#"
AUDIT_PATTERN = "audit.#"
WORKER_HEARTBEAT = "worker.heartbeat"
HEARTBEAT_QUEUE_MAX_LENGTH = 10_000
"""Heartbeats a replica's queue holds at most (oldest dropped first): a stuck consumer cannot grow it."""
CONNECT_ERRORS = (*aio_pika.exceptions.CONNECTION_EXCEPTIONS, *BROKER_ERRORS)


@dataclass(frozen=True)
class TopologyNames:
    """The exchange and queue names of one deployment (or one test), derived from the prefix."""

    prefix: str

    @property
    def exchange(self) -> str:
        return self.prefix

    @property
    def dlx(self) -> str:
        return f"{self.prefix}.dlx"

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}.jobs"

    @property
    def jobs_large(self) -> str:
        return f"{self.prefix}.jobs.large"

    @property
    def queued(self) -> str:
        return f"{self.prefix}.queued"

    @property
    def results(self) -> str:
        return f"{self.prefix}.results"

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def audit(self) -> str:
        return f"{self.prefix}.audit"

    @property
    def workers(self) -> str:
        """Prefix of each results_service replica's own heartbeat queue (`P.workers.<replica>`)."""
        return f"{self.prefix}.workers"

    @property
    def parked(self) -> str:
        return f"{self.prefix}.parked"

    @property
    def deadletters(self) -> str:
        return f"{self.prefix}.deadletters"

    @property
    def exchanges(self) -> list[str]:
        return [self.exchange, self.dlx, self.events]

    @property
    def queues(self) -> list[str]:
        return [
            self.jobs,
            self.jobs_large,
            self.queued,
            self.results,
            self.status,
            self.audit,
            self.parked,
            self.deadletters,
        ]


@dataclass(frozen=True)
class Topology:
    """Typed handles on the declared exchanges and queues."""

    names: TopologyNames
    exchange: AbstractExchange
    dlx: AbstractExchange
    events: AbstractExchange
    jobs: AbstractQueue
    jobs_large: AbstractQueue
    queued: AbstractQueue
    results: AbstractQueue
    status: AbstractQueue
    audit: AbstractQueue
    parked: AbstractQueue
    deadletters: AbstractQueue


@dataclass(frozen=True)
class Broker:
    """One service's broker resources: a robust connection, a confirming channel, the topology."""

    connection: AbstractRobustConnection
    channel: AbstractChannel
    topology: Topology


broker_key = web.AppKey("broker", Broker)


class JitteredRobustConnection(RobustConnection):
    """A robust connection whose every reconnect wait is drawn anew around the configured interval.

    aio-pika waits a fixed `reconnect_interval` between attempts: every service that lost the broker
    at the same moment would come back at the same moments. Reading the interval through `spread`
    makes each wait different per connection and per attempt.
    """

    _reconnect_base: float = 5.0

    @property
    def reconnect_interval(self) -> float:
        return spread(self._reconnect_base)

    @reconnect_interval.setter
    def reconnect_interval(self, value: float) -> None:
        self._reconnect_base = float(value)


async def connect(settings: BaseServiceSettings, name: str) -> AbstractRobustConnection:
    """A robust connection (survives broker restarts) that shows up as `name` in the management UI.

    The first connection is retried with exponential backoff and full jitter for up to
    `amqp_connect_timeout` seconds (a service started with, or just before, the broker waits for it);
    once connected, reconnects wait `amqp_reconnect_interval` give or take half, drawn per attempt.
    """
    from common.messaging.metrics import observe_connection  # metrics reads the topology: imported when used

    url = URL(settings.amqp_url).update_query(name=name, reconnect_interval=settings.amqp_reconnect_interval)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.amqp_connect_timeout
    delays = backoff_delays(settings.retry_max_delay)
    attempt = 0
    while True:
        connection = JitteredRobustConnection(url)
        try:
            await connection.connect(timeout=max(1.0, min(10.0, deadline - loop.time())))
            observe_connection(name, connection)
            return connection
        except CONNECT_ERRORS as exc:
            await connection.close()
            attempt += 1
            delay = next(delays)
            if loop.time() + delay >= deadline:
                log.error("broker_unreachable", connection=name, attempts=attempt, error=repr(exc))
                raise
            log.warning(
                "broker_connect_retry", connection=name, attempt=attempt, delay=round(delay, 3), error=repr(exc)
            )
            await asyncio.sleep(delay)


async def open_channel(connection: AbstractConnection, *, prefetch: int | None = None) -> AbstractChannel:
    """A channel with publisher confirms whose publishes raise when a message cannot be routed."""
    channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
    if prefetch is not None:
        await channel.set_qos(prefetch_count=prefetch)
    return channel


def queue_arguments(settings: BaseServiceSettings) -> dict[str, dict[str, Any]]:
    """The declaration arguments of every queue, by name (the same wherever a queue is declared)."""
    names = TopologyNames(settings.amqp_prefix)
    quorum: dict[str, Any] = {
        "x-queue-type": "quorum",
        "x-delivery-limit": settings.job_delivery_limit,
        "x-dead-letter-exchange": names.dlx,
    }
    # No dead-letter exchange: a copy past its delivery limit is dropped, not parked (see the module docstring).
    copies = {key: value for key, value in quorum.items() if key != "x-dead-letter-exchange"}
    arguments = dict.fromkeys([names.jobs, names.jobs_large, names.results, names.status, names.audit], quorum)
    return {**arguments, names.queued: copies, names.parked: {}, names.deadletters: {}}


async def declare_queue(channel: AbstractChannel, settings: BaseServiceSettings, name: str) -> AbstractQueue:
    """Declare one queue of the topology on `channel`, so that a robust channel declares it again (and
    restores its consumers) after a reconnect, even on a broker that lost its definitions."""
    return await channel.declare_queue(name, durable=True, arguments=queue_arguments(settings)[name])


async def declare_topology(channel: AbstractChannel, settings: BaseServiceSettings) -> Topology:
    """Declare every exchange, queue and binding (idempotent: same arguments every time)."""
    names = TopologyNames(settings.amqp_prefix)
    exchange = await channel.declare_exchange(names.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    dlx = await channel.declare_exchange(names.dlx, aio_pika.ExchangeType.FANOUT, durable=True)
    events = await channel.declare_exchange(names.events, aio_pika.ExchangeType.FANOUT, durable=True)
    jobs, jobs_large, queued, results, status, audit, parked, deadletters = [
        await declare_queue(channel, settings, name) for name in names.queues
    ]
    await jobs.bind(exchange, JOB_STANDARD)
    await jobs_large.bind(exchange, JOB_LARGE)
    for job_key in (JOB_STANDARD, JOB_LARGE):
        await queued.bind(exchange, job_key)
    await results.bind(exchange, RESULT_PATTERN)
    await status.bind(exchange, STATUS_PATTERN)
    await audit.bind(exchange, AUDIT_PATTERN)
    await parked.bind(dlx)
    await deadletters.bind(dlx)
    return Topology(names, exchange, dlx, events, jobs, jobs_large, queued, results, status, audit, parked, deadletters)


async def declare_heartbeat_queue(channel: AbstractChannel, prefix: str, replica: str, ttl: float) -> AbstractQueue:
    """Declare and bind one consumer's own heartbeat queue: exclusive and auto-delete (it goes with its connection),
    classic and not durable (heartbeats are worth nothing after `ttl` seconds, which is also each one's lifetime
    in it), bounded to `HEARTBEAT_QUEUE_MAX_LENGTH` dropping the oldest. Declared on a robust channel, it is
    declared and bound again after a reconnect."""
    names = TopologyNames(prefix)
    exchange = await channel.declare_exchange(names.exchange, aio_pika.ExchangeType.TOPIC, durable=True)
    arguments: dict[str, Any] = {
        "x-message-ttl": max(1, round(ttl * 1000)),
        "x-max-length": HEARTBEAT_QUEUE_MAX_LENGTH,
        "x-overflow": "drop-head",
    }
    queue = await channel.declare_queue(
        f"{names.workers}.{replica}", exclusive=True, auto_delete=True, arguments=arguments
    )
    await queue.bind(exchange, WORKER_HEARTBEAT)
    return queue


async def delete_topology(channel: AbstractChannel, prefix: str) -> None:
    """Remove every queue and exchange of `prefix` (tests and teardown only)."""
    names = TopologyNames(prefix)
    for queue in names.queues:
        await channel.queue_delete(queue)
    for exchange in names.exchanges:
        await channel.exchange_delete(exchange)


class Publishable(Protocol):
    """A message model: every `common.messaging.messages.Message` subclass qualifies."""

    @property
    def message_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def model_dump_json(self) -> str: ...


def to_amqp(
    model: Publishable, *, headers: dict[str, Any] | None = None, expiration: float | None = None
) -> aio_pika.Message:
    """A persistent JSON message carrying the current correlation id in its headers; with `expiration` (seconds),
    a transient one that the broker drops once that old (heartbeats)."""
    all_headers: dict[str, Any] = dict(headers or {})
    correlation_id = current_correlation_id()
    if correlation_id is not None:
        all_headers[CORRELATION_AMQP_HEADER] = correlation_id
    return aio_pika.Message(
        body=model.model_dump_json().encode(),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT if expiration is None else aio_pika.DeliveryMode.NOT_PERSISTENT,
        expiration=expiration,
        message_id=model.message_id,
        type=model.kind,
        headers=all_headers,
    )


async def publish(exchange: AbstractExchange, model: Publishable, routing_key: str, *, mandatory: bool = True) -> None:
    """Publish a message model and wait for the broker's confirm (raises if nacked, or if unroutable and
    `mandatory`: an announcement nobody listens to, with no live feed open, is not an error)."""
    await exchange.publish(to_amqp(model), routing_key=routing_key, mandatory=mandatory)


def status_key(status: str) -> str:
    """The routing key of a worker's status event (`status.processing`), bound to `P.status`."""
    return f"status.{status}"


def broker_context(
    settings: BaseServiceSettings, name: str, *, prefetch: int | None = None
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that connects, declares the topology, stores a Broker under `broker_key`."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        connection = await connect(settings, name)
        try:
            channel = await open_channel(connection, prefetch=prefetch)
            topology = await declare_topology(channel, settings)
            app[broker_key] = Broker(connection, channel, topology)
            yield
        finally:
            await connection.close()

    return context


async def read_queue(connection: AbstractConnection, name: str) -> tuple[int, int]:
    """(ready messages, consumers) of the queue `name`, read now with a passive declare (nothing is created).

    On a channel of its own, opened for this reading: aio-pika answers a repeated declare of a name on one
    channel from its first reply, and a missing queue closes the channel it was asked on."""
    async with connection.channel() as channel:
        result = (await channel.declare_queue(name, passive=True)).declaration_result
        return result.message_count or 0, result.consumer_count or 0


async def broker_ready(app: web.Application) -> None:
    """Readiness check: the connection and channel are open."""
    broker = app[broker_key]
    if broker.connection.is_closed or broker.channel.is_closed:
        raise ConnectionError("RabbitMQ connection is closed")


async def _declare_from_environment() -> None:
    settings = BaseServiceSettings()
    connection = await connect(settings, "dicomflow-setup")
    async with connection:
        channel = await open_channel(connection)
        topology = await declare_topology(channel, settings)
    print(f"declared broker topology {topology.names.prefix!r}: {', '.join(topology.names.queues)}")


if __name__ == "__main__":
    asyncio.run(_declare_from_environment())
