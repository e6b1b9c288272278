"""results_service's gauges of the pipeline's state: the database connection, and the unfinished instances.

Read at scrape time with one query on the indexed `status` column (unfinished instances are few when
the system is healthy): how many instances are `received`, `queued` or `processing`, and how long the
oldest of each has waited since it was registered. An operator sees a stuck pipeline coming from these
before any user does; the reconciler acts on the same facts (results_service.reconciler).
"""

from __future__ import annotations

import prometheus_client
from aiohttp import web
from tortoise import connections

from common.messaging.messages import InstanceStatus

UNFINISHED = (InstanceStatus.RECEIVED, InstanceStatus.QUEUED, InstanceStatus.PROCESSING)

DATABASE_CONNECTED = prometheus_client.Gauge(
    "dicomflow_database_connected", "1 while results_service's PostgreSQL answers, else 0."
)
UNFINISHED_INSTANCES = prometheus_client.Gauge(
    "dicomflow_unfinished_instances", "Instances not yet done or failed, by status.", ["status"]
)
OLDEST_UNFINISHED = prometheus_client.Gauge(
    "dicomflow_oldest_unfinished_instance_age_seconds",
    "Seconds since the oldest instance still in this status was registered (0 when there is none).",
    ["status"],
)

_UNFINISHED_SQL = """SELECT status, count(*) AS count, extract(epoch FROM now() - min(created_at)) AS age
FROM instances WHERE status = ANY($1::varchar[]) GROUP BY status"""


async def scrape_pipeline(_: web.Application) -> None:
    """Scrape hook: the database's state and the unfinished instances (connected = 0 if the query fails)."""
    try:
        rows = await connections.get("default").execute_query_dict(_UNFINISHED_SQL, [[s.value for s in UNFINISHED]])
    except Exception:
        DATABASE_CONNECTED.set(0)
        raise
    DATABASE_CONNECTED.set(1)
    found = {str(row["status"]): row for row in rows}
    for status in UNFINISHED:
        row = found.get(status.value)
        UNFINISHED_INSTANCES.labels(status.value).set(int(row["count"]) if row else 0)
        OLDEST_UNFINISHED.labels(status.value).set(float(row["age"]) if row else 0.0)
