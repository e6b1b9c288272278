"""Application factory of processor_service."""

from __future__ import annotations

from aiohttp import web

from common.web import make_app
from processor_service.settings import ProcessorSettings


def init_app(settings: ProcessorSettings) -> web.Application:
    """Build the processor_service application from its settings."""
    app = make_app("processor_service")
    return app
