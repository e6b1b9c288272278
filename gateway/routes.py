"""The route table of the gateway: every `/api` route is declared by its OpenAPI operation.

Each API's operations (`common.schemas.*_api`) are paired with what answers them here: a proxy to
the service that implements them, or a handler of the gateway's own. `_serve` adds the pairs to
the router and to the OpenAPI document together, so a route without its operation (or the
reverse) cannot be written.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from common.app.api_routes import Handler, Route, add_routes, handled_by
from common.app.openapi import ApiSpec
from common.schemas.accounts_api import account_operations, auth_operations
from common.schemas.client_logs_api import client_log_operations
from common.schemas.docs_api import document_operations
from common.schemas.elements_api import element_operations
from common.schemas.instances_api import instance_operations
from common.schemas.lookup import LOOKUP_MAX_BYTES
from common.schemas.lookup_api import lookup_operations
from common.schemas.uploads_api import feed_operations, upload_operations
from common.schemas.workers_api import worker_operations
from gateway import docs, login
from gateway.feed.protocol import handle_events
from gateway.keys import api_spec_key
from gateway.portal import add_portal_routes
from gateway.proxy import forward_to
from gateway.settings import GatewaySettings

TITLE = "dicomflow"
VERSION = "0.1.0"


def _serve(app: web.Application, routes: list[Route]) -> None:
    app[api_spec_key].add(operation for operation, _ in routes)
    add_routes(app.router, routes)


def setup_routes(app: web.Application, settings: GatewaySettings) -> None:
    """Register every route of the API with its operation, then the portal's static files."""
    app[api_spec_key] = ApiSpec(
        TITLE, VERSION, "The public HTTP API of dicomflow. Errors are application/problem+json."
    )
    to_results = forward_to(settings.results_url, service="results_service")
    # A download or an upload streams for as long as it takes: no total deadline, only one for connecting
    # and one for each read once the body is sent.
    streaming = aiohttp.ClientTimeout(
        total=None, connect=settings.upstream_connect_timeout, sock_read=settings.upstream_timeout
    )
    documents: dict[str, Handler] = {
        "get_openapi.json": docs.handle_openapi,
        "get_docs": docs.handle_docs,
        "get_asyncapi.json": docs.handle_asyncapi,
    }
    _serve(app, handled_by(document_operations(), documents))
    _serve(
        app,
        handled_by(
            auth_operations(),
            {
                "post_auth_login": login.handle_login,
                "post_auth_logout": login.handle_logout,
                "post_auth_password": login.handle_change_password,
            },
        ),
    )
    # Accounts and the audit trail are answered (and role-checked) by results_service.
    to_accounts = forward_to(settings.results_url, service="results_service", max_body=settings.max_auth_body)
    _serve(app, handled_by(account_operations(), default=to_accounts))
    to_elements = forward_to(settings.results_url, service="results_service", max_body=settings.elements_max_body)
    _serve(app, handled_by(element_operations(), default=to_elements))
    to_download = forward_to(settings.results_url, service="results_service", timeout=streaming)
    _serve(app, handled_by(instance_operations(), {"get_instances_instance_id_file": to_download}, to_results))
    to_lookup = forward_to(settings.results_url, service="results_service", max_body=LOOKUP_MAX_BYTES)
    _serve(app, handled_by(lookup_operations(), default=to_lookup))
    to_logs = forward_to(settings.results_url, service="results_service", max_body=settings.client_log_max_bytes)
    _serve(app, handled_by(client_log_operations(), default=to_logs))
    _serve(app, handled_by(worker_operations(), default=to_results))  # the live worker list (admins)
    # Uploads stream chunk by chunk to ingest_service, which owns their size limit (`UPLOAD_MAX_BYTES`).
    to_ingest = forward_to(settings.ingest_url, service="ingest_service", timeout=streaming)
    _serve(app, handled_by(upload_operations(), default=to_ingest))
    _serve(app, handled_by(feed_operations(), default=handle_events))
    add_portal_routes(app)
