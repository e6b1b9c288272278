"""The gateway's readiness: it can do its work now only if what it forwards to can.

The gateway holds no data of its own: uploads go to ingest_service, everything else (logins included)
to results_service, and the live feed comes from RabbitMQ. So it is ready when ingest_service's and
results_service's `/readyz` answer 200 and its feed consumer's connection is open (that check is the
feed's own, registered by `gateway.feed.setup`). A load balancer then stops sending requests that
would only come back as 503s. Liveness (`/healthz`) stays a bare "the process answers".
"""

from __future__ import annotations

import aiohttp
from aiohttp import web

from common.app.upstream_ready import UpstreamReady
from common.app.web import readiness_checks_key
from gateway.keys import client_session_key
from gateway.settings import GatewaySettings


def proxy_session(app: web.Application) -> aiohttp.ClientSession:
    """The one client session the proxy forwards requests over: the probes reuse its connections."""
    return app[client_session_key]


def setup_readiness(app: web.Application, settings: GatewaySettings) -> None:
    """Register the upstream checks (`ingest_service_ready`, `results_service_ready`), over the proxy's session."""
    app[readiness_checks_key].extend(
        [
            UpstreamReady("ingest_service", settings.ingest_url, proxy_session),
            UpstreamReady("results_service", settings.results_url, proxy_session),
        ]
    )
