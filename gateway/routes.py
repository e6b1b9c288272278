"""The route table of the gateway: what is served here and what is proxied where.

Each public API adds its routes and declares its OpenAPI operations in `setup_routes`.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from common.app.openapi import ApiSpec
from common.schemas.accounts_api import account_operations
from common.schemas.elements_api import element_operations
from common.schemas.instances_api import instance_operations
from common.schemas.uploads_api import upload_operations
from gateway import docs
from gateway.events import setup_events
from gateway.portal import add_portal_routes
from gateway.proxy import forward_to
from gateway.settings import GatewaySettings


def setup_routes(app: web.Application, settings: GatewaySettings) -> None:
    """Register every route and declare the documented operations."""
    spec = ApiSpec("dicomflow", "0.1.0", "The public HTTP API of dicomflow. Errors are application/problem+json.")
    app[docs.api_spec_key] = spec
    app.router.add_get("/api/openapi.json", docs.handle_openapi)
    app.router.add_get("/api/docs", docs.handle_docs)
    spec.add(account_operations())  # login/logout, users and audit: routed by gateway.auth

    # Elements: results_service answers every method (and the 405s) itself.
    to_results = forward_to(settings.results_url, service="results_service", max_body=settings.elements_max_body)
    for path in ("/api/elements", "/api/elements/", "/api/elements/{element_id}", "/api/elements/{element_id}/"):
        app.router.add_route("*", path, to_results)
    spec.add(element_operations())

    # Uploads, instances, previews and studies: read from results_service (GET only; the
    # registration route /internal/... is never exposed).
    for path in (
        "/api/uploads/{upload_id}",
        "/api/instances",
        "/api/instances/",
        "/api/instances/{instance_id}",
        "/api/instances/{instance_id}/preview.png",
        "/api/studies",
        "/api/studies/",
    ):
        app.router.add_get(path, to_results)
    spec.add(instance_operations())

    # Uploads: streamed chunk by chunk to ingest_service (which answers at the same path); no total
    # deadline for a multi-GB body, only for connecting and for the answer once the body is sent.
    upload_timeout = aiohttp.ClientTimeout(
        total=None, connect=settings.upstream_connect_timeout, sock_read=settings.upstream_timeout
    )
    to_ingest = forward_to(
        settings.ingest_url, service="ingest_service", timeout=upload_timeout, max_body=settings.upload_max_bytes
    )
    app.router.add_post("/api/uploads", to_ingest)
    spec.add(upload_operations())  # with the live feed of setup_events below
    # Downloads of stored files stream the same way the other direction: no total deadline.
    to_results_streaming = forward_to(settings.results_url, service="results_service", timeout=upload_timeout)
    app.router.add_get("/api/instances/{instance_id}/file", to_results_streaming)

    # The web portal (static files at `/`) and its live status feed (WebSocket at /api/events).
    add_portal_routes(app)
    setup_events(app, settings)
