"""A readiness check on a service this one depends on over HTTP: that service's own `/readyz` answers 200.

A service that forwards work to another is not ready when that one is not: asking its `/healthz` would
only show that its process answers. The check stays cheap and bounded however often it is probed: one
GET with a short timeout, its answer kept for a second, and probes that arrive while a GET is out wait
for that one instead of sending their own, so a storm of probes (several kubelets, a load balancer, a
person with `watch curl`) costs the upstream one request a second, and through it its own dependencies
no more. `/readyz` needs no identity, so the check sends none.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

UPSTREAM_READY_TIMEOUT = 1.0
"""Seconds the upstream's `/readyz` may take before it counts as not ready (within `/readyz`'s own bound)."""

UPSTREAM_READY_TTL = 1.0
"""Seconds an answer is reused before the upstream is asked again."""

SessionOf = Callable[[web.Application], aiohttp.ClientSession]
Clock = Callable[[], float]


class UpstreamReady:
    """A readiness check (`await check(app)` raises when not ready) named `<check_name>` in `/readyz`'s report."""

    def __init__(
        self,
        upstream: str,
        base_url: str,
        session_of: SessionOf,
        *,
        check_name: str | None = None,
        timeout: float = UPSTREAM_READY_TIMEOUT,
        ttl: float = UPSTREAM_READY_TTL,
        clock: Clock = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self.url = f"{base_url.rstrip('/')}/readyz"
        self.__name__ = check_name or f"{upstream}_ready"
        self._session_of = session_of
        self._timeout = timeout
        self._ttl = ttl
        self._clock = clock
        self._lock = asyncio.Lock()
        self._answered_at: float | None = None
        self._failure: str | None = None

    async def __call__(self, app: web.Application) -> None:
        """Raise ConnectionError naming the upstream and why, unless it answered ready (now or within `ttl`)."""
        async with self._lock:
            if self._answered_at is None or self._clock() - self._answered_at >= self._ttl:
                self._failure = await self._ask(self._session_of(app))
                self._answered_at = self._clock()
            failure = self._failure
        if failure is not None:
            raise ConnectionError(failure)

    async def _ask(self, session: aiohttp.ClientSession) -> str | None:
        """None when the upstream answers ready, else the reason it does not count as ready."""
        try:
            async with session.get(self.url, timeout=aiohttp.ClientTimeout(total=self._timeout)) as response:
                if response.status == 200:
                    return None
                failing = await _failing_checks(response)
                return f"{self.upstream} is not ready: its /readyz answered {response.status}{failing}"
        except TimeoutError:
            return f"{self.upstream} did not answer /readyz within {self._timeout:g} s"
        except aiohttp.ClientError as exc:
            return f"{self.upstream} is unreachable: {type(exc).__name__}: {exc}"


async def _failing_checks(response: aiohttp.ClientResponse) -> str:
    """` (checks failing: a, b)` from the upstream's problem body, or nothing if it names none."""
    try:
        body = await response.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return ""
    checks = body.get("checks") if isinstance(body, dict) else None
    return f" (checks failing: {', '.join(map(str, checks))})" if isinstance(checks, dict) and checks else ""
