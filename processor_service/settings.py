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
    processor_cpu_slots: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Jobs run at once and worker processes (`PROCESSOR_CPU_SLOTS`); unset: `PROCESSOR_CONCURRENCY` if "
        "set, else one per CPU the container (cgroup cpu.max) or the machine gives.",
    )
    processor_concurrency: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="The former name of `PROCESSOR_CPU_SLOTS`, used when that is unset (`PROCESSOR_CONCURRENCY`).",
    )
    processor_memory_budget_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Bytes the running jobs' estimates may add up to (`PROCESSOR_MEMORY_BUDGET_BYTES`): a job starts "
        "only if it fits in what is left. Unset: 60% of the container's memory (cgroup memory.max) or the machine's. "
        "A job larger than the whole budget fails (large-jobs queue) or is passed on to the large-jobs queue.",
    )
    processor_memory_limit_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Resident memory of the processor and its worker processes above which it takes no new job "
        "until back under 90% of it (`PROCESSOR_MEMORY_LIMIT_BYTES`). Unset: 85% of the container's or machine's "
        "memory.",
    )
    processor_cpu_limit_percent: float | None = Field(
        default=None,
        gt=0,
        description="CPU use of the processor and its workers (100 = one core) above which it takes no new job until "
        "back under 90% of it (`PROCESSOR_CPU_LIMIT_PERCENT`). Unset: 100 per CPU the container or machine gives.",
    )
    processor_usage_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between two readings of the processor's CPU and memory use (`PROCESSOR_USAGE_INTERVAL`).",
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
