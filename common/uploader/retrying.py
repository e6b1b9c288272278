"""One HTTP request, sent again after a fault that may pass: the retry policy of every call the uploader makes.

Retried: connection errors (refused, reset, dropped mid-body), timeouts, `5xx` and `429`. Never retried: any
other `4xx`, which says the request itself is wrong and would be refused again. The wait before retry *n* is
full jitter (`common.messaging.backoff.full_jitter`, so a site's many clients do not come back in lockstep),
and never shorter than the server's `Retry-After` (seconds or an HTTP-date). When the retries run out the call
raises `ServiceUnreachable`, which the CLI turns into exit status 3.

A request body may be a stream that one attempt consumes (a file read from disk, a zip built on the fly), so
the body is given as a factory called once per attempt.

    reply = await send(session, "POST", url, service="server", policy=RetryPolicy(), body=lambda: open_file())
    if reply.status == 202: receipt = UploadReceipt.model_validate_json(reply.body)
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from common.app.logs import get_logger
from common.messaging.backoff import full_jitter

log = get_logger("dicomflow.uploader.retrying")

DEFAULT_MAX_RETRIES = 5

BodyFactory = Callable[[], Any]
"""Makes a fresh request body (bytes, str, an aiohttp payload or an async iterable of bytes) for one attempt."""


class ServiceUnreachable(Exception):
    """A service could not be reached, or kept failing, after every retry the policy allows."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service} could not be reached after the retries: {reason}")
        self.service = service
        self.reason = reason


@dataclass(frozen=True)
class RetryPolicy:
    """How many times to retry and how long to wait: full jitter up to `max_delay`, at least `Retry-After`.

    `retry_after_cap` bounds how long one `Retry-After` may hold a request (a server asking for an hour is
    waited for that long only up to the cap).
    """

    max_retries: int = DEFAULT_MAX_RETRIES
    first_delay: float = 0.5
    max_delay: float = 30.0
    retry_after_cap: float = 120.0

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `retry` (0-based), given the server's `Retry-After` if any."""
        jitter = full_jitter(retry, self.max_delay, self.first_delay)
        if retry_after is None:
            return jitter
        return max(jitter, min(retry_after, self.retry_after_cap))


@dataclass(frozen=True)
class Reply:
    """A response read whole: what the caller needs once the connection is gone."""

    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class RetryEvent:
    """One retry about to happen: reported to `on_retry` (the progress bar counts them) and logged."""

    service: str
    url: str
    retry: int
    delay: float
    reason: str


def is_retryable_status(status: int) -> bool:
    """`5xx` and `429` may pass; every other status is the answer."""
    return status >= 500 or status == 429


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: a number of seconds or an HTTP-date; None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectionError,
    aiohttp.ClientPayloadError,
    TimeoutError,
)
"""Faults of the network or the server's process, never of the request: refused, reset, dropped, timed out."""


async def send(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    service: str,
    policy: RetryPolicy,
    body: BodyFactory | None = None,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> Reply:
    """Send one request, retrying as `policy` says; the first answer that is not retried.

    Returns every answer but a retryable one (2xx, 3xx, 4xx other than 429) for the caller to judge. Raises
    `ServiceUnreachable(service, reason)` when the last allowed attempt still failed with a connection
    error, a timeout, a `5xx` or a `429`.
    """
    retry = 0
    while True:
        retry_after: float | None = None
        try:
            data = body() if body is not None else None
            async with session.request(
                method, url, data=data, json=json_body, headers=headers, params=params
            ) as response:
                payload = await response.read()
                if not is_retryable_status(response.status):
                    return Reply(response.status, response.headers, payload)
                reason = f"HTTP {response.status}"
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
        except RETRYABLE_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
        if retry >= policy.max_retries:
            log.warning("service_unreachable", service=service, url=url, retries=retry, reason=reason)
            raise ServiceUnreachable(service, reason)
        wait = policy.delay(retry, retry_after)
        event = RetryEvent(service=service, url=url, retry=retry + 1, delay=wait, reason=reason)
        log.info("request_retry", service=service, url=url, retry=event.retry, delay=round(wait, 3), reason=reason)
        if on_retry is not None:
            on_retry(event)
        await asyncio.sleep(wait)
        retry += 1
