"""Reading a test's RabbitMQ queues: take exactly the messages a test expects and prove there are no more, or
drain whatever a queue holds once its publisher's confirms are in.

LIVENESS is the one bound on waiting for something that must happen: a guard against hanging, far above
any machine's speed; a passing test never waits for it. Proving that something did NOT happen is never
done by waiting: see `tests.pipeline_helpers.consumed_through_witness`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

LIVENESS = 60.0
"""Seconds a test waits for what must happen before it fails."""


def _one(_: AbstractIncomingMessage) -> int:
    return 1


async def take(
    queue: AbstractQueue,
    expected: int,
    timeout: float = LIVENESS,
    *,
    weight: Callable[[AbstractIncomingMessage], int] = _one,
) -> list[AbstractIncomingMessage]:
    """Take (and ack) messages from `queue` until `expected` arrived, then check that no more are there.

    `weight` says how many of the expected things one message carries (1 each by default). basic.get
    rather than the declare-ok message count, which RabbitMQ 3.10 reports late for classic queues.
    "No more" holds for what was published before the test's proof that the expected messages are all
    out (a later message would arrive after this returns).
    """
    taken: list[AbstractIncomingMessage] = []
    count = 0
    deadline = asyncio.get_running_loop().time() + timeout
    while count < expected and asyncio.get_running_loop().time() < deadline:
        message = await _next(queue)
        if message is not None:
            taken.append(message)
            count += weight(message)
    assert count == expected, f"{queue.name}: {count} taken, expected {expected}"
    assert await queue.get(fail=False, timeout=LIVENESS) is None, f"{queue.name}: more than {expected}"
    return taken


async def drain(queue: AbstractQueue) -> list[AbstractIncomingMessage]:
    """Every message a queue no consumer reads holds now (acked), taken until a basic.get finds it empty.

    Complete for what its publisher saw confirmed before the call (RabbitMQ confirms a message once the queue
    holds it), e.g. every job of an upload ingest answered 202 for. Not for messages still on their way: `take`.
    """
    messages: list[AbstractIncomingMessage] = []
    while (message := await queue.get(fail=False, timeout=LIVENESS)) is not None:
        await message.ack()
        messages.append(message)
    return messages


async def _next(queue: AbstractQueue) -> AbstractIncomingMessage | None:
    """The next message, acked; None after a short pause when the queue is empty."""
    message = await queue.get(fail=False, timeout=LIVENESS)
    if message is None:
        await asyncio.sleep(0.02)
        return None
    await message.ack()
    return message
