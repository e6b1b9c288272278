"""The route table of ingest_service."""

from __future__ import annotations

from aiohttp import web

from common.app.api_routes import add_routes, handled_by
from common.schemas.uploads_api import upload_operations
from ingest_service.handlers import handle_upload


def setup_routes(app: web.Application) -> None:
    """The upload route at its operation's path (the gateway forwards the path unchanged), and at `/upload`."""
    add_routes(app.router, handled_by(upload_operations(), default=handle_upload))
    app.router.add_post("/upload", handle_upload)
