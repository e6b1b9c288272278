"""A reverse proxy for the uploader's tests: in front of a real gateway on 127.0.0.1, it passes requests on, or
answers some of them with a fault, and records when each request came.

Faults are planned per file (the `filename` of an upload's Content-Disposition) as a list of actions taken in
turn by its successive requests, then pass:

- `"drop-before"`: close the connection without forwarding (the server never saw the file);
- `"drop-after"`: forward, then close the connection without answering (the server took the file; the client
  never heard);
- `(status, retry_after)`: answer this status (with `Retry-After` when given) without forwarding;
- `"delay"`: forward after `delay` seconds (slows a run down so a test can stop it midway).
"""

from __future__ import annotations

import asyncio
import email.message
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

Action = str | tuple[int, int | None]
_HOP_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "keep-alive"})


@dataclass
class FaultProxy:
    """The proxy's plan and what it saw."""

    upstream: str
    plan: dict[str, list[Action]] = field(default_factory=dict)
    delay: float = 0.0
    seen: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    """Per file name, the monotonic time each of its upload requests arrived."""
    answered: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    """Per file name, the time each of its faults was answered (or its connection dropped)."""
    paths: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        """The proxy as an aiohttp app (serve it with `aiohttp_server`)."""
        app = web.Application(client_max_size=1024**3)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        app.cleanup_ctx.append(self._session)
        return app

    async def _session(self, app: web.Application) -> Any:
        self._client = aiohttp.ClientSession(auto_decompress=False)
        yield
        await self._client.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path)
        name = _filename(request.headers.get("Content-Disposition"))
        action: Action | None = None
        if name is not None and request.path == "/api/uploads":
            self.seen[name].append(time.monotonic())
            todo = self.plan.get(name)
            action = todo.pop(0) if todo else None
        if isinstance(action, tuple):
            await request.read()
            status, retry_after = action
            self.answered[name or ""].append(time.monotonic())
            headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
            return web.json_response(
                {"title": "fault", "detail": f"proxy says {status}"}, status=status, headers=headers
            )
        if action == "drop-before":
            await request.read()
            return self._drop(request, name)
        if action == "delay" or self.delay:
            await asyncio.sleep(self.delay)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = request.content.iter_chunked(256 * 1024) if request.body_exists else None
        async with self._client.request(
            request.method, self.upstream + request.rel_url.path_qs, headers=headers, data=body
        ) as upstream:
            payload = await upstream.read()
            if action == "drop-after":
                return self._drop(request, name)
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
            return web.Response(status=upstream.status, body=payload, headers=kept)

    def _drop(self, request: web.Request, name: str | None) -> web.StreamResponse:
        self.answered[name or ""].append(time.monotonic())
        assert request.transport is not None
        request.transport.close()
        return web.Response(status=204)


def _filename(header: str | None) -> str | None:
    if not header:
        return None
    message = email.message.Message()
    message["Content-Disposition"] = header
    return message.get_filename()
