"""What an operator needs to see of the broker: each process's connection, and every queue's depth and consumers.

`dicomflow_broker_connected` is read from the connection object at scrape time (every process). The queue
gauges are read from RabbitMQ itself by the process that registers `scrape_queues` (results_service): a
passive declare of each queue of the topology on a short-lived channel of its own, so a queue that is
missing (deleted by hand) closes only that channel and shows as `-1`, never breaks the service's channels.
"""

from __future__ import annotations

import aio_pika.exceptions
import prometheus_client
from aio_pika.abc import AbstractConnection
from aiohttp import web

from common.messaging.broker import BROKER_ERRORS, broker_key, read_queue

BROKER_CONNECTED = prometheus_client.Gauge(
    "dicomflow_broker_connected", "1 while this process's RabbitMQ connection is open, else 0.", ["connection"]
)
QUEUE_MESSAGES = prometheus_client.Gauge(
    "dicomflow_queue_messages",
    "Messages ready in a queue of the topology (jobs waiting, parked messages, audit records waiting...); "
    "-1 when the queue could not be read.",
    ["queue"],
)
QUEUE_CONSUMERS = prometheus_client.Gauge(
    "dicomflow_queue_consumers",
    "Consumers attached to a queue of the topology; -1 when it could not be read.",
    ["queue"],
)


def observe_connection(name: str, connection: AbstractConnection) -> None:
    """Report `connection`'s state under `name` at every scrape (no polling: read when scraped)."""
    BROKER_CONNECTED.labels(name).set_function(lambda: 0.0 if connection.is_closed else 1.0)


def _short(prefix: str, queue: str) -> str:
    """`P.jobs.large` → `jobs.large`: the label names the role, the same in every deployment."""
    return queue[len(prefix) + 1 :] if queue.startswith(prefix + ".") else queue


async def scrape_queues(app: web.Application) -> None:
    """Scrape hook: depth and consumers of every queue of the topology, read from RabbitMQ."""
    broker = app[broker_key]
    names = broker.topology.names
    for queue_name in names.queues:
        label = _short(names.prefix, queue_name)
        try:
            messages, consumers = await read_queue(broker.connection, queue_name)
            QUEUE_MESSAGES.labels(label).set(messages)
            QUEUE_CONSUMERS.labels(label).set(consumers)
        except (*BROKER_ERRORS, aio_pika.exceptions.ChannelClosed, RuntimeError):
            QUEUE_MESSAGES.labels(label).set(-1)
            QUEUE_CONSUMERS.labels(label).set(-1)
