"""Application factory of ingest_service."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from common.app.blob_settings import open_blob_store
from common.app.logs import get_logger
from common.app.upstream_ready import UpstreamReady
from common.app.web import make_app, readiness_checks_key
from common.auth.service_guard import service_signer_key, setup_service_tokens
from common.messaging.broker import broker_context, broker_key, broker_ready
from ingest_service.audit import StopReporter
from ingest_service.keys import blob_store_key, client_session_key, registrar_key, settings_key, stop_reporter_key
from ingest_service.registration import Registrar
from ingest_service.routes import setup_routes
from ingest_service.settings import IngestSettings

log = get_logger(__name__)

# Bodies reach the upload handler as sent: an encoded one is refused with 415, never inflated without limits
# (nor answered with aiohttp's bare 400 for an encoding it cannot decode). A client that goes away mid-upload
# ends the body with an error the handler answers (the files it finished keep their rows, the stop is audited),
# rather than cancelling it wherever it stands: run_app's default, pinned so that test servers behave the same.
HANDLER_ARGS = {"auto_decompress": False, "handler_cancellation": False}


async def blob_store_context(app: web.Application) -> AsyncIterator[None]:
    """Open the blob store; staged files left by a crash are swept once at start-up."""
    settings = app[settings_key]
    store = open_blob_store(settings, settings.keyring())
    swept = store.sweep_tmp()
    if swept:
        log.info("staged_files_swept", count=swept)
    app[blob_store_key] = store
    yield


async def client_session_context(app: web.Application) -> AsyncIterator[None]:
    """One HTTP client session (connection pool) for the calls to results_service, and the registrar that
    batches registrations over it (its calls in flight finish before the session closes)."""
    settings = app[settings_key]
    async with aiohttp.ClientSession() as session:
        app[client_session_key] = session
        registrar = Registrar(session, settings.results_url, settings.results_timeout, app[service_signer_key])
        app[registrar_key] = registrar
        try:
            yield
        finally:
            await registrar.close()


async def stop_reporter_context(app: web.Application) -> AsyncIterator[None]:
    """The reporter of uploads answered with a problem (results_service, else `P.audit`); on stop, the reports it
    still holds get the shutdown timeout to go through."""
    settings = app[settings_key]
    reporter = StopReporter(
        app[client_session_key],
        app[service_signer_key],
        settings.results_url,
        app[broker_key].topology.exchange,
        timeout=settings.results_timeout,
        max_delay=settings.retry_max_delay,
    )
    app[stop_reporter_key] = reporter
    yield
    await reporter.close(settings.shutdown_timeout)


def session_of(app: web.Application) -> aiohttp.ClientSession:
    """The client session of the calls to results_service."""
    return app[client_session_key]


def init_app(settings: IngestSettings) -> web.Application:
    """Build the ingest_service application from its settings."""
    app = make_app("ingest_service", handler_args=HANDLER_ARGS)
    app[settings_key] = settings
    setup_service_tokens(app, settings, "ingest_service")
    app.cleanup_ctx.append(blob_store_context)
    app.cleanup_ctx.append(client_session_context)
    app.cleanup_ctx.append(broker_context(settings, "ingest_service"))
    app.cleanup_ctx.append(stop_reporter_context)
    # Ready when results_service, which registers every upload, is ready itself (its /readyz, not its /healthz).
    results_ready = UpstreamReady("results_service", settings.results_url, session_of, check_name="results_ready")
    app[readiness_checks_key].extend([broker_ready, results_ready])
    setup_routes(app)
    return app
