"""Application factory of processor_service: a job consumer with /healthz, /readyz and /metrics."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from common.app.blob_settings import open_blob_store
from common.app.web import make_app, readiness_checks_key
from common.messaging.broker import broker_context, broker_ready
from processor_service.admission import Admission
from processor_service.capacity import resolve
from processor_service.consumer import consumer_context, pool_context, pool_ready
from processor_service.heartbeat import heartbeat_context
from processor_service.keys import admission_key, blob_store_key, settings_key, usage_sampler_key
from processor_service.pool import WorkerPool
from processor_service.settings import ProcessorSettings
from processor_service.usage import ProcessTreeUsage, UsageSampler


def init_app(
    settings: ProcessorSettings,
    *,
    sampler: UsageSampler | None = None,
    pool_factory: Callable[[int], WorkerPool] = WorkerPool,
) -> web.Application:
    """Build the processor_service application from its settings (tests may give the usage readings and the pool)."""
    app = make_app("processor_service")
    app[settings_key] = settings
    resources = resolve(settings)
    app[admission_key] = Admission(resources.memory_budget, resources.cpu_slots, resources.limits)
    app[usage_sampler_key] = sampler if sampler is not None else ProcessTreeUsage()
    app[blob_store_key] = open_blob_store(settings, settings.keyring())
    # Cleanup runs in reverse: stop consuming and drain first, then the workers, then the broker.
    app.cleanup_ctx.append(broker_context(settings, "processor_service", prefetch=resources.cpu_slots))
    app.cleanup_ctx.append(pool_context(settings, pool_factory))
    app.cleanup_ctx.append(consumer_context(settings))
    app.cleanup_ctx.append(heartbeat_context(settings))  # last in, first out: `stopping` is sent first
    app[readiness_checks_key].extend([broker_ready, pool_ready])
    return app
