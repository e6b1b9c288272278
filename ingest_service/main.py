"""Application factory of ingest_service."""

from __future__ import annotations

from aiohttp import web

from common.web import make_app
from ingest_service.settings import IngestSettings


def init_app(settings: IngestSettings) -> web.Application:
    """Build the ingest_service application from its settings."""
    app = make_app("ingest_service")
    return app
