"""`dicomflow jobs parked` and `dicomflow jobs replay`: the operator's view of the parked (dead-lettered) messages.

Listing takes every parked message without acknowledging it and then returns them all to the
queue (nack with requeue puts each back where it was), so looking loses nothing. Replay
republishes a message to the main exchange with the routing key it was dead-lettered from,
waits for the broker's confirm, and only then acks the parked copy; a crash in between leaves a
duplicate, never a loss, and every consumer is idempotent. Connection settings come from the
environment (`AMQP_URL`, `AMQP_PREFIX`) like the services'.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict, dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from aio_pika.exceptions import ChannelNotFoundEntity

from common.app.logs import get_logger
from common.app.settings import BaseServiceSettings
from common.cli.support import add_json_flag, print_json, print_table
from common.messaging.broker import TopologyNames, open_channel

log = get_logger("dicomflow.cli.jobs")

_RESET_HEADERS = (
    "x-death",
    "x-delivery-count",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
)


@dataclass(frozen=True)
class ParkedMessage:
    """What an operator needs to decide about one parked message."""

    message_id: str | None
    type: str | None
    routing_key: str
    queue: str | None
    reason: str | None
    deaths: int
    instance_id: str | None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `jobs parked` and `jobs replay`."""
    jobs = subparsers.add_parser("jobs", help="list and replay parked (dead-lettered) jobs")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)
    parked = actions.add_parser("parked", help="list the parked messages (they stay parked)")
    add_json_flag(parked)
    parked.set_defaults(handler=run_parked)
    replay = actions.add_parser("replay", help="republish parked messages to where they came from")
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="replay every parked message")
    which.add_argument("message_ids", nargs="*", default=[], metavar="MESSAGE_ID", help="the messages to replay")
    add_json_flag(replay)
    replay.set_defaults(handler=run_replay)


def describe(message: AbstractIncomingMessage) -> ParkedMessage:
    """The message's identity and its first death (queue, reason, original routing key)."""
    raw = (message.headers or {}).get("x-death")
    deaths: list[Any] = raw if isinstance(raw, list) else []
    first: dict[str, Any] = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    keys = first.get("routing-keys") or [message.routing_key or ""]
    try:
        body = json.loads(message.body)
        instance_id = body.get("instance_id") if isinstance(body, dict) else None
    except ValueError:
        instance_id = None
    return ParkedMessage(
        message_id=message.message_id,
        type=message.type,
        routing_key=str(keys[0]),
        queue=first.get("queue"),
        reason=first.get("reason"),
        deaths=sum(int(d.get("count", 1)) for d in deaths if isinstance(d, dict)),
        instance_id=instance_id if isinstance(instance_id, str) else None,
    )


async def _take_all(queue: AbstractQueue) -> list[AbstractIncomingMessage]:
    """Every message now in the queue, unacknowledged (held by this channel until nacked or acked)."""
    taken: list[AbstractIncomingMessage] = []
    while (message := await queue.get(no_ack=False, fail=False, timeout=10)) is not None:
        taken.append(message)
    return taken


async def _requeue(messages: list[AbstractIncomingMessage]) -> None:
    for message in messages:
        await message.nack(requeue=True)


async def _open(settings: BaseServiceSettings) -> tuple[aio_pika.abc.AbstractConnection, AbstractChannel]:
    connection = await aio_pika.connect(settings.amqp_url)
    return connection, await open_channel(connection)


async def _parked_queue(channel: AbstractChannel, names: TopologyNames) -> AbstractQueue:
    try:
        return await channel.get_queue(names.parked)
    except ChannelNotFoundEntity as exc:
        raise ValueError(f"there is no queue {names.parked!r}: check AMQP_PREFIX (`make setup` declares it)") from exc


async def list_parked(settings: BaseServiceSettings) -> list[ParkedMessage]:
    """The parked messages in queue order; all of them are still parked afterwards."""
    connection, channel = await _open(settings)
    async with connection:
        taken = await _take_all(await _parked_queue(channel, TopologyNames(settings.amqp_prefix)))
        try:
            return [describe(message) for message in taken]
        finally:
            await _requeue(taken)


async def replay(settings: BaseServiceSettings, message_ids: set[str] | None) -> list[ParkedMessage]:
    """Republish (confirmed) the chosen parked messages, `None` meaning all, then ack their parked copies."""
    names = TopologyNames(settings.amqp_prefix)
    connection, channel = await _open(settings)
    async with connection:
        queue = await _parked_queue(channel, names)
        exchange = await channel.get_exchange(names.exchange)
        taken = await _take_all(queue)
        replayed: list[ParkedMessage] = []
        try:
            for message in taken:
                if message_ids is not None and message.message_id not in message_ids:
                    continue  # stays parked
                parked = describe(message)
                await exchange.publish(_copy(message), routing_key=parked.routing_key)
                await message.ack()
                replayed.append(parked)
                log.info("job_replayed", message_id=parked.message_id, routing_key=parked.routing_key)
        finally:
            await _requeue([m for m in taken if not m.processed])
        return replayed


def _copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The same message as first published: body and properties, without the broker's death records."""
    headers = {k: v for k, v in (message.headers or {}).items() if k not in _RESET_HEADERS}
    return aio_pika.Message(
        body=message.body,
        headers=headers,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=message.message_id,
        type=message.type,
        correlation_id=message.correlation_id,
        timestamp=message.timestamp,
    )


def _print(messages: list[ParkedMessage], as_json: bool) -> None:
    if as_json:
        print_json([asdict(m) for m in messages])
        return
    print_table(
        ("message id", "type", "routing key", "from queue", "reason", "deaths", "instance"),
        [(m.message_id, m.type, m.routing_key, m.queue, m.reason, m.deaths, m.instance_id) for m in messages],
    )


def run_parked(args: argparse.Namespace) -> int:
    """Print the parked messages."""
    messages = asyncio.run(list_parked(BaseServiceSettings()))
    _print(messages, args.json)
    return 0


def run_replay(args: argparse.Namespace) -> int:
    """Replay the named (or all) parked messages; exit 1 when a named one was not parked."""
    wanted = None if args.all else set(args.message_ids)
    replayed = asyncio.run(replay(BaseServiceSettings(), wanted))
    _print(replayed, args.json)
    missing = sorted((wanted or set()) - {m.message_id for m in replayed if m.message_id})
    if missing:
        log.error("jobs_not_parked", message_ids=missing)
        return 1
    return 0
