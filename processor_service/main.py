"""Application factory of processor_service: a job consumer with /healthz, /readyz and /metrics."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from common.app.web import make_app, readiness_checks_key
from common.messaging.broker import broker_context, broker_ready
from common.storage.blobs import BlobStore
from processor_service.consumer import consumer_context, pool_context, pool_ready
from processor_service.keys import blob_store_key, settings_key
from processor_service.settings import ProcessorSettings


def init_app(settings: ProcessorSettings) -> web.Application:
    """Build the processor_service application from its settings."""
    app = make_app("processor_service")
    app[settings_key] = settings
    app[blob_store_key] = BlobStore(Path(settings.blob_dir), settings.keyring())
    # Cleanup runs in reverse: stop consuming and drain first, then the workers, then the broker.
    app.cleanup_ctx.append(broker_context(settings, "processor_service", prefetch=settings.processor_concurrency))
    app.cleanup_ctx.append(pool_context(settings))
    app.cleanup_ctx.append(consumer_context(settings))
    app[readiness_checks_key].extend([broker_ready, pool_ready])
    return app
