"""The sockets connected to this replica, and who may see which event."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from common.messaging.messages import StatusEvent
from gateway.feed.frames import StatusFrame
from gateway.feed.session import FeedSession

OUTBOX_FRAMES = 256


@dataclass(eq=False)
class Subscriber:
    """One open socket, its token (re-checked while it is open) and the bounded queue of frames to send."""

    session: FeedSession
    token: str
    ws: web.WebSocketResponse
    outbox: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=OUTBOX_FRAMES))
    overflowed: bool = False

    def offer(self, frame: str) -> None:
        """Queue a frame; a client that cannot keep up is marked and closed by its sender."""
        try:
            self.outbox.put_nowait(frame)
        except asyncio.QueueFull:
            self.overflowed = True


class EventHub:
    """The sockets connected to this replica, indexed by owner, and admins who see everything."""

    def __init__(self) -> None:
        self._by_user: dict[str, set[Subscriber]] = {}
        self._admins: set[Subscriber] = set()
        # Sockets still waiting for their token: closed on shutdown like the others.
        self.unauthenticated: set[web.WebSocketResponse] = set()

    def __len__(self) -> int:
        return len(self._admins) + sum(len(group) for group in self._by_user.values())

    def add(self, subscriber: Subscriber) -> None:
        caller = subscriber.session.caller
        if caller.is_admin:
            self._admins.add(subscriber)
        else:
            self._by_user.setdefault(caller.user_id, set()).add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        self._admins.discard(subscriber)
        group = self._by_user.get(subscriber.session.caller.user_id)
        if group is not None:
            group.discard(subscriber)
            if not group:
                del self._by_user[subscriber.session.caller.user_id]

    def recipients(self, event: StatusEvent) -> list[Subscriber]:
        """The owner's sockets and every admin's."""
        return [*self._by_user.get(event.owner, ()), *self._admins]

    def dispatch(self, event: StatusEvent) -> int:
        """Queue `event` for every socket allowed to see it; returns how many."""
        targets = self.recipients(event)
        if targets:
            frame = StatusFrame.of(event).model_dump_json()
            for subscriber in targets:
                subscriber.offer(frame)
        return len(targets)

    def subscribers(self) -> list[Subscriber]:
        return [*self._admins, *(s for group in self._by_user.values() for s in group)]

    async def close_all(self, code: int, message: bytes) -> None:
        """Close every socket (shutdown): clients see a clean close and reconnect elsewhere."""
        sockets = [*self.unauthenticated, *(s.ws for s in self.subscribers())]
        await asyncio.gather(*(ws.close(code=code, message=message) for ws in sockets), return_exceptions=True)
