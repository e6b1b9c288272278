"""How often workers report their load, and when a silent one counts as gone: read by processor_service, which
sends the heartbeats, and results_service, which keeps the live worker list, so both agree on one bound."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerHeartbeatSettings(BaseSettings):
    """`WORKER_HEARTBEAT_INTERVAL` and `WORKER_STALE_AFTER` (3 intervals unless set)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    worker_heartbeat_interval: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between two heartbeats of a processor (`WORKER_HEARTBEAT_INTERVAL`).",
    )
    worker_stale_after: float | None = Field(
        default=None,
        gt=0,
        description="Seconds without a heartbeat after which a worker leaves the live list; default 3 heartbeat "
        "intervals (`WORKER_STALE_AFTER`).",
    )

    @property
    def heartbeat_stale_after(self) -> float:
        """The bound in force: `worker_stale_after`, or three heartbeat intervals (two may be lost)."""
        return self.worker_stale_after or 3 * self.worker_heartbeat_interval
