"""A streaming reverse proxy to the internal services, shared by every proxied route.

Bodies flow chunk by chunk both ways (a multi-GB upload never sits in the gateway's memory);
the correlation id travels in `X-Request-ID`; an upstream that is down answers 503 and one
that is too slow 504, both as problem+json, never a hang.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from common.app.logs import CORRELATION_HEADER, get_logger
from common.app.problems import PayloadTooLarge, ProblemError, ServiceUnavailable
from common.app.web import correlation_id_key
from common.auth.identity import caller_key
from common.auth.service_guard import service_signer_key
from gateway.keys import client_session_key

log = get_logger(__name__)

# Request headers passed to the upstream; anything else (cookies, auth) stops at the gateway.
FORWARDED_REQUEST_HEADERS = (
    "Accept",
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "Content-Disposition",
    "If-Match",
    "If-None-Match",
)
# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


class BadGateway(ProblemError):
    status = 502


class GatewayTimeout(ProblemError):
    status = 504


def client_session_context(
    *, connect_timeout: float, total_timeout: float, limit: int = 100
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context holding the one `ClientSession` every proxied request shares."""

    async def client_session_ctx(app: web.Application) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=total_timeout, connect=connect_timeout)
        connector = aiohttp.TCPConnector(limit=limit)
        # auto_decompress=False: encoded bodies pass through untouched with their Content-Encoding.
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False) as session:
            app[client_session_key] = session
            yield

    return client_session_ctx


class _LimitedBody:
    """The request body as an async iterator of chunks that stops once it exceeds `max_bytes`."""

    def __init__(self, content: aiohttp.StreamReader, max_bytes: int | None) -> None:
        self.content = content
        self.max_bytes = max_bytes
        self.too_large = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        size = 0
        # Whatever the socket delivered, as it is: no re-slicing into fixed chunks (fewer, larger writes
        # upstream), and still bounded by the reader's buffer limit, so memory stays flat.
        async for chunk in self.content.iter_any():
            size += len(chunk)
            if self.max_bytes is not None and size > self.max_bytes:
                self.too_large = True
                raise PayloadTooLarge(f"The body exceeds the limit of {self.max_bytes} bytes.")
            yield chunk


def _upstream_headers(request: web.Request, service: str, extra: dict[str, str] | None) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    for name in FORWARDED_REQUEST_HEADERS:
        if name in request.headers:
            headers[name] = request.headers[name]
    correlation_id = request.get(correlation_id_key)
    if correlation_id is not None:
        headers[CORRELATION_HEADER] = correlation_id
    # The upstream learns who calls only from this signed token: the identity the auth middleware verified
    # (none on a public route), for this upstream alone. A client's own Authorization never travels on.
    headers.update(request.app[service_signer_key].headers(service, request.get(caller_key)))
    headers.update(extra or {})
    return headers


async def proxy(
    request: web.Request,
    base_url: str,
    *,
    service: str,
    timeout: aiohttp.ClientTimeout | None = None,
    max_body: int | None = None,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Forward `request` (method, path, query, body) to `base_url` and stream the answer back.

    `service` names the upstream (`results_service`, `ingest_service`): the audience of the service token
    that carries the caller; `timeout` overrides the session's (an upload wants a long total but a short connect);
    `max_body` answers 413 for larger bodies, before contacting the upstream when the size is
    declared; `headers` are added to the upstream request (e.g. the authenticated user).
    """
    if max_body is not None and request.content_length is not None and request.content_length > max_body:
        raise PayloadTooLarge(f"The body is {request.content_length} bytes; the limit is {max_body}.")
    url = URL(base_url.rstrip("/") + request.raw_path, encoded=True)
    body = _LimitedBody(request.content, max_body) if request.body_exists else None
    upstream_headers = _upstream_headers(request, service, headers)
    skip = {"Content-Type", "Accept-Encoding"} - set(upstream_headers.keys())
    options: dict[str, Any] = {"timeout": timeout} if timeout is not None else {}
    session = request.app[client_session_key]
    response: web.StreamResponse | None = None
    try:
        async with session.request(
            request.method,
            url,
            data=body.__aiter__() if body is not None else None,
            headers=upstream_headers,
            skip_auto_headers=skip,
            allow_redirects=False,
            **options,
        ) as upstream:
            response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != CORRELATION_HEADER.lower():
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
    except (aiohttp.ClientError, TimeoutError) as exc:
        if response is not None and response.prepared:
            # Headers are gone already: cut the connection so the client sees a truncated body.
            log.warning("upstream_broke_mid_response", service=service, error=type(exc).__name__)
            if request.transport is not None:
                request.transport.close()
            return response
        raise _translate(exc, service, body) from exc


def _translate(exc: BaseException, service: str, body: _LimitedBody | None) -> ProblemError:
    """The problem the client gets for an upstream failure before any answer was sent."""
    if body is not None and body.too_large:
        return PayloadTooLarge(f"The body exceeds the limit of {body.max_bytes} bytes.")
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        log.warning("upstream_unavailable", service=service, error=str(exc))
        return ServiceUnavailable(f"{service} is unavailable; try again shortly.")
    if isinstance(exc, TimeoutError):
        log.warning("upstream_timeout", service=service)
        return GatewayTimeout(f"{service} did not answer in time.")
    log.warning("upstream_failed", service=service, error=f"{type(exc).__name__}: {exc}")
    return BadGateway(f"{service} failed to answer: {type(exc).__name__}.")


def forward_to(
    base_url: str, *, service: str, timeout: aiohttp.ClientTimeout | None = None, max_body: int | None = None
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """A handler that proxies every request it gets to `base_url` (see :func:`proxy`)."""

    async def handle_forward(request: web.Request) -> web.StreamResponse:
        return await proxy(request, base_url, service=service, timeout=timeout, max_body=max_body)

    return handle_forward
