"""Stand-ins for the services outside dicomflow that `dicomflow upload` talks to: a lab's metadata system and a
third-party analysis service. One aiohttp app answers every path by a script of behaviours, one per request
(`500`, `429`, `slow` past the client's timeout, `ok`), and records what it received."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

SLOW_SECONDS = 2.0
"""How long a `slow` answer takes: longer than the tests' client timeouts."""


@dataclass(frozen=True)
class Received:
    """One request as the stand-in saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class StandIn:
    """A third-party service: `script` says how to answer each request in turn (then `ok` for ever); `ok` answers
    `status` with `body` (JSON, or raw bytes)."""

    script: list[str] = field(default_factory=list)
    status: int = 200
    body: Any = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.received.append(Received(request.method, request.path_qs, dict(request.headers), await request.read()))
        step = self.script.pop(0) if self.script else "ok"
        if step == "slow":
            await asyncio.sleep(SLOW_SECONDS)
            return web.json_response({"late": True})
        if step == "429":
            return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": "0"})
        if step.isdigit():
            return web.json_response({"error": "broken"}, status=int(step))
        if isinstance(self.body, bytes):
            return web.Response(body=self.body, status=self.status, content_type="text/plain")
        return web.json_response(self.body, status=self.status)


async def serve(standin: StandIn, aiohttp_server: Callable[..., Awaitable[TestServer]]) -> StandIn:
    """Serve `standin` on 127.0.0.1 and set its `url` (the server's root, no trailing slash)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", standin.handle)
    server = await aiohttp_server(app)
    standin.url = str(server.make_url("")).rstrip("/")
    return standin
