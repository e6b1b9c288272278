"""Reading a test's RabbitMQ queues: take exactly the messages a test expects, and prove there are no more."""

from __future__ import annotations

import asyncio

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue


async def take(queue: AbstractQueue, expected: int, timeout: float = 10.0) -> list[AbstractIncomingMessage]:
    """Take (and ack) messages from `queue` until `expected` arrived, then check that no more are there.

    basic.get rather than the declare-ok message count, which RabbitMQ 3.10 reports late for classic queues.
    """
    taken: list[AbstractIncomingMessage] = []
    deadline = asyncio.get_running_loop().time() + timeout
    while len(taken) < expected and asyncio.get_running_loop().time() < deadline:
        message = await queue.get(fail=False, timeout=5)
        if message is None:
            await asyncio.sleep(0.02)
            continue
        await message.ack()
        taken.append(message)
    assert len(taken) == expected, f"{queue.name}: {len(taken)} messages, expected {expected}"
    assert await queue.get(fail=False, timeout=5) is None, f"{queue.name}: more than {expected} messages"
    return taken
