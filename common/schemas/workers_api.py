"""`GET /api/workers`: the live processors and their load (answered by results_service, which keeps the list from
the workers' heartbeats), its body models and its OpenAPI operation."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from common.app.openapi import Operation, json_reply
from common.messaging.messages import DecoderSupport
from common.schemas.accounts_api import ADMINS_ONLY, RATE_LIMITED, UNAUTHORIZED

WORKERS_TAG = "workers"


class WorkerView(BaseModel):
    """One live worker as its latest heartbeat described it."""

    model_config = ConfigDict(frozen=True)

    worker: str = Field(description="hostname:pid, the `worker` its results carry.")
    host: str
    pid: int
    started_at: datetime
    queues: list[str]
    memory_budget_bytes: int
    cpu_slots: int
    reserved_bytes: int = Field(description="Memory reserved by the jobs it runs (their estimates).")
    jobs_in_flight: int
    paused: bool = Field(description="True while it takes no jobs because its memory or CPU use is over its limits.")
    pause_reason: str | None
    cpu_percent: float = Field(description="CPU use of the processor and its worker processes (100 = one core).")
    memory_bytes: int = Field(description="Resident memory of the processor and its worker processes.")
    decoders: list[DecoderSupport]
    sent_at: datetime = Field(description="When the worker sent its latest heartbeat (its clock).")
    last_seen: datetime = Field(description="When results_service received it (its clock).")


class WorkersSummary(BaseModel):
    """Totals over the live workers."""

    model_config = ConfigDict(frozen=True)

    workers: int
    paused: int
    memory_budget_bytes: int
    reserved_bytes: int
    cpu_slots: int
    jobs_in_flight: int
    cpu_percent: float
    memory_bytes: int


class WorkerList(BaseModel):
    """The live workers, by worker id, and their totals."""

    model_config = ConfigDict(frozen=True)

    items: list[WorkerView]
    summary: WorkersSummary
    stale_after_seconds: float = Field(description="A worker silent for this long is no longer listed.")


def worker_operations() -> list[Operation]:
    """`GET /api/workers` (admins)."""
    return [
        Operation(
            "GET",
            "/api/workers",
            "List the live workers and their load (admins)",
            WORKERS_TAG,
            {200: json_reply("The live workers.", WorkerList), **UNAUTHORIZED, **ADMINS_ONLY, **RATE_LIMITED},
            description="A worker is live from its first heartbeat until it stops cleanly or stays silent for "
            "`WORKER_STALE_AFTER` seconds. Figures are those of each worker's latest heartbeat "
            "(every `WORKER_HEARTBEAT_INTERVAL` seconds).",
        )
    ]
