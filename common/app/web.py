"""The HTTP edge every service shares: correlation ids, request/response logs, problem+json
errors, Prometheus metrics, health and readiness endpoints, and the process entry point."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import prometheus_client
import uvloop
from aiohttp import web
from pydantic import ValidationError

from common.app.logs import CORRELATION_HEADER, bind_correlation_id, configure_logging, get_logger
from common.app.problems import ProblemError, problem_response
from common.app.settings import BaseServiceSettings
from common.messaging.faults import is_infrastructure_error

log = get_logger(__name__)

ReadinessCheck = Callable[[web.Application], Awaitable[None]]
ScrapeHook = Callable[[web.Application], Awaitable[None]]
correlation_id_key = web.RequestKey("correlation_id", str)
readiness_checks_key = web.AppKey("readiness_checks", list[ReadinessCheck])
scrape_hooks_key = web.AppKey("scrape_hooks", list[ScrapeHook])
"""Refresh gauges that must be read from elsewhere (the broker, the database) when /metrics is scraped."""

SCRAPE_HOOK_TIMEOUT = 3.0
OUTAGE_RETRY_AFTER = 5
"""Seconds a client is told to wait when a request failed because a dependency is down."""
service_name_key = web.AppKey("service_name", str)
INTERNAL_PREFIX = "/internal/"

REQUESTS = prometheus_client.Counter(
    "http_requests_total", "HTTP requests answered.", ["service", "method", "route", "status"]
)
LATENCY = prometheus_client.Histogram(
    "http_request_duration_seconds", "Time to answer an HTTP request.", ["service", "method", "route"]
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _problem_instance(request: web.Request) -> str | None:
    """The `instance` of a problem: the request's path, unless it is an internal route. A caller relays the
    problems of internal routes (the gateway's login relays results_service's), and must not show their paths."""
    return None if request.path.startswith(INTERNAL_PREFIX) else request.path


def _route_name(request: web.Request) -> str:
    """The route pattern (not the raw path) so metrics stay low-cardinality and carry no ids."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the correlation id, log the request and the response, turn errors into problem+json."""
    correlation_id = bind_correlation_id(request.headers.get(CORRELATION_HEADER))
    request[correlation_id_key] = correlation_id
    service = request.app[service_name_key]
    started = time.perf_counter()
    log.info(
        "http_request",
        service=service,
        method=request.method,
        path=request.path,
        client=request.remote,
        bytes=request.content_length,
    )
    try:
        response = await handler(request)
    except ProblemError as exc:
        log.info("request_failed", status=exc.status, reason=exc.detail)
        response = problem_response(
            exc.status, exc.detail, errors=exc.errors, instance=_problem_instance(request), headers=exc.headers
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = problem_response(
            exc.status,
            exc.text if exc.text and exc.text != f"{exc.status}: {exc.reason}" else exc.reason,
            instance=_problem_instance(request),
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
    except (asyncio.CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        if is_infrastructure_error(exc):  # the database, the blob store or the broker is down: not the request's fault
            log.warning("dependency_unavailable", method=request.method, path=request.path, error=repr(exc))
            response = problem_response(
                503,
                "A service this request needs (database, file store or message broker) is unavailable; "
                "try again shortly.",
                instance=_problem_instance(request),
                headers={"Retry-After": str(OUTAGE_RETRY_AFTER)},
            )
        else:
            log.exception("unhandled_error", method=request.method, path=request.path)
            response = problem_response(
                500, "An internal error occurred; it has been logged.", instance=_problem_instance(request)
            )
    elapsed = time.perf_counter() - started
    route = _route_name(request)
    REQUESTS.labels(service, request.method, route, str(response.status)).inc()
    LATENCY.labels(service, request.method, route).observe(elapsed)
    size = response.body_length if response.prepared else response.content_length
    log.info(
        "http_response",
        service=service,
        method=request.method,
        path=request.path,
        status=response.status,
        duration_ms=round(elapsed * 1000, 2),
        bytes=size,
    )
    return response


async def _add_correlation_header(request: web.Request, response: web.StreamResponse) -> None:
    correlation_id = request.get(correlation_id_key)
    if correlation_id is not None:
        response.headers[CORRELATION_HEADER] = correlation_id


async def healthz(_: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: every dependency this service registered answers."""
    failures: dict[str, str] = {}
    for check in request.app[readiness_checks_key]:
        try:
            await asyncio.wait_for(check(request.app), timeout=2.0)
        except Exception as exc:  # any failure means not ready; the reason is reported
            failures[getattr(check, "__name__", "check")] = f"{type(exc).__name__}: {exc}"
    if failures:
        return problem_response(503, "Not ready", checks=failures)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this process's metrics, refreshed by the app's scrape hooks first (a hook
    that fails or takes too long leaves its gauges as they were, or as the hook marked them, and is logged)."""
    for hook in request.app[scrape_hooks_key]:
        try:
            await asyncio.wait_for(hook(request.app), timeout=SCRAPE_HOOK_TIMEOUT)
        except Exception as exc:  # a scrape must answer: the failure shows in the gauges the hook owns
            log.warning("metrics_refresh_failed", hook=getattr(hook, "__name__", "hook"), error=repr(exc))
    body = prometheus_client.generate_latest(prometheus_client.REGISTRY)
    return web.Response(body=body, headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})


def make_app(
    service: str, *, client_max_size: int = 1024**2, handler_args: Mapping[str, Any] | None = None
) -> web.Application:
    """An application with the shared middleware and the /healthz, /readyz and /metrics routes.

    `handler_args`: options of aiohttp's request handler that the service pins whoever serves it (run_app or a
    test server), e.g. `auto_decompress`."""
    app = web.Application(middlewares=[observe_middleware], client_max_size=client_max_size, handler_args=handler_args)
    app[service_name_key] = service
    app[readiness_checks_key] = []
    app[scrape_hooks_key] = []
    app.on_response_prepare.append(_add_correlation_header)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


S = TypeVar("S", bound=BaseServiceSettings)


def load_settings(settings_cls: type[S]) -> S:
    """Build settings from the environment, or exit with a readable message (no traceback)."""
    try:
        return settings_cls()
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}" for err in exc.errors()]
        sys.stderr.write(f"invalid configuration for {settings_cls.__name__}:\n" + "\n".join(lines) + "\n")
        raise SystemExit(2) from None


def serve(
    service: str,
    settings_cls: type[S],
    init_app: Callable[[S], web.Application],
    port: Callable[[S], int],
) -> None:
    """Entry point of `python -m <service>`: settings, logging, then serve until SIGINT/SIGTERM."""
    settings = load_settings(settings_cls)
    configure_logging(service, settings.log_level, settings.log_format)
    app = init_app(settings)
    log.info("service_starting", host=settings.host, port=port(settings))
    web.run_app(
        app,
        host=settings.host,
        port=port(settings),
        print=None,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout,
        handle_signals=True,
        # uvloop: the same asyncio API on libuv; about 10 % less CPU per proxied upload in the
        # gateway and results_service (bench/README.md, "DICOM pipeline").
        loop=uvloop.new_event_loop(),
    )
    log.info("service_stopped")
