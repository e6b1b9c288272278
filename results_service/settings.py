"""Settings of results_service (environment variables; see the README's table)."""

from __future__ import annotations

from pydantic import Field

from common.app.secret_settings import BlobKeySettings, ServiceTokenSettings
from common.app.settings import BaseServiceSettings, ClientLogBodyLimit, ElementsBodyLimit
from common.messaging.heartbeats import WorkerHeartbeatSettings
from common.messaging.jobs import JobRoutingSettings
from results_service.account_settings import AccountSettings


class ResultsSettings(
    BaseServiceSettings,
    AccountSettings,
    ServiceTokenSettings,
    BlobKeySettings,
    ElementsBodyLimit,
    JobRoutingSettings,
    ClientLogBodyLimit,
    WorkerHeartbeatSettings,
):
    """Settings of results_service."""

    results_port: int = Field(default=8081, ge=1, le=65535, description="TCP port of results_service (`RESULTS_PORT`).")
    results_batch_size: int = Field(
        default=100, ge=1, le=10_000, description="Results stored per transaction, at most (`RESULTS_BATCH_SIZE`)."
    )
    results_batch_ms: float = Field(
        default=50.0, gt=0, description="Longest wait in ms to fill a batch of results (`RESULTS_BATCH_MS`)."
    )
    reconcile_interval_seconds: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between two rounds of the reconciler (`RECONCILE_INTERVAL_SECONDS`).",
    )
    reconcile_after_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "An instance `received` for longer than this has its job published again by the reconciler "
            "(`RECONCILE_AFTER_SECONDS`)."
        ),
    )
    reconcile_unfinished_after_seconds: float = Field(
        default=1800.0,
        gt=0,
        description=(
            "An instance `queued` or `processing` for longer than this, while its jobs queue has no backlog, has its "
            "job published again (`RECONCILE_UNFINISHED_AFTER_SECONDS`); keep it above PROCESSOR_JOB_TIMEOUT times "
            "(JOB_DELIVERY_LIMIT + 1)."
        ),
    )
    reconcile_max_attempts: int = Field(
        default=3,
        ge=1,
        description=(
            "Times the reconciler publishes an instance's job again before it fails the instance with a reason "
            "(`RECONCILE_MAX_ATTEMPTS`)."
        ),
    )
