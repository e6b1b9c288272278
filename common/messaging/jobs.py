"""The one definition of a processing job on the wire: its idempotency key, its routing, its publish.

Two processes publish jobs: ingest, for an instance it has just registered, and results_service's
reconciler, for an instance left `received` (its job may never have reached the broker). Both build
the same message id and route by the same size rule through `publish_job`, so the jobs queues, the
processors and results_service's copy cannot tell the two apart.
"""

from __future__ import annotations

from aio_pika.abc import AbstractExchange
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.messaging.broker import JOB_LARGE, JOB_STANDARD, publish
from common.messaging.messages import PIPELINE_VERSION, ProcessJob


class JobRoutingSettings(BaseSettings):
    """The size above which a job goes to the large-jobs queue, read by ingest and results_service alike."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    large_job_bytes: int = Field(
        default=256 * 1024**2,
        ge=1,
        description="Files larger than this go to the large-jobs queue (`LARGE_JOB_BYTES`).",
    )


def job_message_id(instance_id: str) -> str:
    """The idempotency key of an instance's job for this pipeline version (the same whoever publishes it)."""
    return f"{instance_id}.job.{PIPELINE_VERSION}"


def job_routing_key(size: int, large_job_bytes: int) -> str:
    """`job.large` for a file larger than `large_job_bytes`, else `job.standard`."""
    return JOB_LARGE if size > large_job_bytes else JOB_STANDARD


async def publish_job(exchange: AbstractExchange, job: ProcessJob, large_job_bytes: int) -> str:
    """Publish the job to its jobs queue (and results_service's copy), confirmed; returns the routing key."""
    routing_key = job_routing_key(job.size, large_job_bytes)
    await publish(exchange, job, routing_key)
    return routing_key
