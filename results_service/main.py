"""Application factory of results_service."""

from __future__ import annotations

from aiohttp import web
from tortoise import connections

from common.app.blob_settings import open_blob_store
from common.app.web import make_app, readiness_checks_key, scrape_hooks_key
from common.auth.service_guard import setup_service_tokens
from common.messaging.broker import broker_context, broker_ready
from common.messaging.metrics import scrape_queues
from results_service.audit_consumer import audit_consumer_context
from results_service.consumers import consumers_context
from results_service.db import tortoise_context
from results_service.deid import Deidentifier
from results_service.keys import blob_store_key, deidentifier_key, settings_key
from results_service.metrics import scrape_pipeline
from results_service.reconciler import reconciler_context
from results_service.routes import setup_routes
from results_service.settings import ResultsSettings
from results_service.workers import setup_workers


async def database(_: web.Application) -> None:
    """Readiness: PostgreSQL answers a query through Tortoise's pool."""
    await connections.get("default").execute_query("SELECT 1")


def init_app(settings: ResultsSettings) -> web.Application:
    """Build the results_service application from its settings."""
    app = make_app("results_service")
    app[settings_key] = settings
    setup_service_tokens(app, settings, "results_service")
    app[blob_store_key] = open_blob_store(settings, settings.keyring())
    app[deidentifier_key] = Deidentifier(settings.deid_uid_key())
    app.cleanup_ctx.append(tortoise_context(settings.database_url))
    app.cleanup_ctx.append(broker_context(settings, "results_service"))
    app.cleanup_ctx.append(consumers_context(settings))
    app.cleanup_ctx.append(audit_consumer_context(settings))
    app.cleanup_ctx.append(reconciler_context(settings))
    setup_workers(app, settings)  # the live worker list, fed by heartbeats
    app[readiness_checks_key].append(database)
    app[readiness_checks_key].append(broker_ready)
    app[scrape_hooks_key].extend([scrape_queues, scrape_pipeline])
    setup_routes(app)
    return app
