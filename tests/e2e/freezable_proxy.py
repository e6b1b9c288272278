"""A TCP proxy that can freeze one direction of its connections: what a test uses to stop a process at a chosen
moment of a conversation with RabbitMQ, without hooks in the product.

Bytes that flow a frozen way are counted and never forwarded (a frozen direction stays frozen for
the test): the peer waits for them until it gives up or is killed. When either side of a connection
goes away, the connection is torn down.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from enum import StrEnum


class Direction(StrEnum):
    UP = "client_to_broker"
    DOWN = "broker_to_client"


@dataclass
class FreezableProxy:
    """Listen on 127.0.0.1:`port` and relay every connection to `target_host`:`target_port`."""

    target_host: str
    target_port: int
    frozen: set[Direction] = field(default_factory=set)
    held: dict[Direction, int] = field(default_factory=lambda: dict.fromkeys(Direction, 0))
    port: int = 0
    _server: asyncio.Server | None = None
    _connections: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/"

    def freeze(self, direction: Direction) -> None:
        """From now on, hold back what flows this way, on every connection."""
        self.frozen.add(direction)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            await self._server.wait_closed()

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        broker_reader, broker_writer = await asyncio.open_connection(self.target_host, self.target_port)
        pumps = [
            asyncio.create_task(self._pump(client_reader, broker_writer, Direction.UP)),
            asyncio.create_task(self._pump(broker_reader, client_writer, Direction.DOWN)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)  # one side went away: so does the other
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in (client_writer, broker_writer):
                writer.transport.abort()
            self._connections.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direction: Direction) -> None:
        """Relay one direction; while it is frozen keep reading (to see the peer go away) but forward nothing."""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if direction in self.frozen:
                    self.held[direction] += len(data)
                    continue
                writer.write(data)
                await writer.drain()
