"""Settings of processor_service (environment variables; see the README's table)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from common.app.secret_settings import BlobKeySettings
from common.app.settings import BaseServiceSettings
from common.messaging.heartbeats import WorkerHeartbeatSettings

QueueName = Literal["standard", "large"]


class ProcessorSettings(BaseServiceSettings, BlobKeySettings, WorkerHeartbeatSettings):
    """Settings of processor_service."""

    processor_port: int = Field(
        default=8083, ge=1, le=65535, description="TCP port of processor_service (`PROCESSOR_PORT`)."
    )
    processor_concurrency: int = Field(
        default=2,
        ge=1,
        le=256,
        description="Jobs in flight at once: the prefetch, the semaphore and the number of worker processes.",
    )
    processor_job_timeout: float = Field(
        default=120.0,
        gt=0,
        description="Seconds one job may take in its worker process before the process is killed and the job retried.",
    )
    processor_queues: list[QueueName] = Field(
        default=["standard"],
        min_length=1,
        description='Job queues to consume, a JSON list: `["standard"]`, `["large"]` or `["standard","large"]`.',
    )
