"""The two do-nothing apps of the pipeline benchmark's floor: a proxy and a sink, each its own process.

The architecture makes every uploaded byte cross two Python HTTP hops (client -> gateway -> ingest_service)
before any work is done on it. These apps keep exactly that data path and drop the work: the proxy mounts
the gateway's own streaming proxy (`gateway.proxy.forward_to`, with the gateway's upload timeout and body
limit) and nothing else (no auth, no rate limit, no request logs); the sink reads the body as ingest does
(`ingest_service.parts.body_chunks`), counts its bytes and answers 202 with a receipt shaped like ingest's.
Both are served by `common.app.web.serve`, like the services: uvloop, the same malloc tuning, the same run_app.

    FLOOR_ROLE=sink FLOOR_PORT=9001 python -m bench.hop_floor_apps
    FLOOR_ROLE=proxy FLOOR_PORT=9000 FLOOR_UPSTREAM=http://127.0.0.1:9001 python -m bench.hop_floor_apps
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

import aiohttp
from aiohttp import web
from pydantic import Field

from common.app.settings import BaseServiceSettings, UploadBodyLimit
from common.app.web import healthz, serve
from common.schemas.instances import FileStatus
from common.schemas.uploads import UploadedFile, UploadReceipt
from gateway.proxy import client_session_context, forward_to
from ingest_service.parts import body_chunks

UPLOADS = "/api/uploads"
RECEIVED = "/api/received"
# The gateway's defaults (gateway/settings.py): they bound waiting only, so they cost nothing per request.
CONNECT_TIMEOUT = 3.0
UPSTREAM_TIMEOUT = 60.0


class FloorSettings(BaseServiceSettings, UploadBodyLimit):
    """Which of the two apps this process serves, on which port, and (for the proxy) where it forwards to."""

    floor_role: Literal["proxy", "sink"] = Field(description="`proxy` or `sink` (`FLOOR_ROLE`).")
    floor_port: int = Field(ge=1, le=65535, description="TCP port (`FLOOR_PORT`).")
    floor_upstream: str = Field(default="", description="Base URL of the sink, for the proxy (`FLOOR_UPSTREAM`).")


@dataclass
class Received:
    """What reached the sink: requests answered and body bytes read."""

    requests: int = 0
    bytes: int = 0


received_key = web.AppKey("received", Received)


async def handle_upload(request: web.Request) -> web.Response:
    """Read the whole body as ingest does, count it, and answer ingest's receipt for one accepted file."""
    received = request.app[received_key]
    async for chunk in body_chunks(request):
        received.bytes += len(chunk)
    received.requests += 1
    receipt = UploadReceipt(
        upload_id=uuid.uuid4().hex, files=[UploadedFile(name="file.dcm", status=FileStatus.ACCEPTED)]
    )
    return web.json_response(receipt.model_dump(mode="json"), status=202)


async def handle_received(request: web.Request) -> web.Response:
    """The sink's counters, so the benchmark can check that every byte crossed both hops."""
    received = request.app[received_key]
    return web.json_response({"requests": received.requests, "bytes": received.bytes})


def sink_app() -> web.Application:
    """`POST /api/uploads` that reads and drops the body; `GET /api/received`; `GET /healthz`."""
    app = web.Application()
    app[received_key] = Received()
    app.router.add_post(UPLOADS, handle_upload)
    app.router.add_get(RECEIVED, handle_received)
    app.router.add_get("/healthz", healthz)
    return app


def proxy_app(upstream: str, max_body: int) -> web.Application:
    """`POST /api/uploads` streamed to `upstream` by the gateway's proxy, as the gateway mounts it; `GET /healthz`."""
    app = web.Application()
    app.cleanup_ctx.append(client_session_context(connect_timeout=CONNECT_TIMEOUT, total_timeout=UPSTREAM_TIMEOUT))
    upload_timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=UPSTREAM_TIMEOUT)
    app.router.add_post(UPLOADS, forward_to(upstream, service="sink", timeout=upload_timeout, max_body=max_body))
    app.router.add_get("/healthz", healthz)
    return app


def init_app(settings: FloorSettings) -> web.Application:
    """The app this process's settings ask for."""
    if settings.floor_role == "sink":
        return sink_app()
    if not settings.floor_upstream:
        raise SystemExit("FLOOR_UPSTREAM is required for FLOOR_ROLE=proxy")
    return proxy_app(settings.floor_upstream, settings.upload_max_bytes)


if __name__ == "__main__":
    serve("hop_floor", FloorSettings, init_app, lambda settings: settings.floor_port)
