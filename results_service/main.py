"""Application factory of results_service."""

from __future__ import annotations

from aiohttp import web

from common.web import make_app
from results_service.settings import ResultsSettings


def init_app(settings: ResultsSettings) -> web.Application:
    """Build the results_service application from its settings."""
    app = make_app("results_service")
    return app
