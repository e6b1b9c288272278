"""Who a feed socket belongs to, and the token check that says so."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from common.auth.identity import Caller


@dataclass(frozen=True)
class FeedSession:
    """Who a socket belongs to and until when their token is good."""

    caller: Caller
    expires_at: datetime | None = None


TokenCheck = Callable[[web.Application, str], Awaitable[FeedSession]]
"""Check a bearer token exactly as the API does: raise Unauthorized when it is not good, another
ProblemError (503) when it cannot be checked right now."""
