"""The route table of ingest_service."""

from __future__ import annotations

from aiohttp import web

from ingest_service.handlers import handle_upload


def setup_routes(app: web.Application) -> None:
    """Register the upload route, also at the gateway's public path so its proxy forwards the path unchanged."""
    app.router.add_post("/upload", handle_upload)
    app.router.add_post("/api/uploads", handle_upload)
