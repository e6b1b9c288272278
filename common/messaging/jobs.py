"""The one definition of a processing job on the wire: its idempotency key, its routing, its publish.

Two processes publish jobs: ingest, for an instance it has just registered, and results_service's
reconciler, for an instance left `received` (its job may never have reached the broker). Both build
the job with `build_job` (the same message id, the same memory estimate) and route it by the same rule
through `publish_job` (its estimated memory against `LARGE_JOB_BYTES`), so the jobs queues, the
processors and results_service's copy cannot tell the two apart.

A broker in a memory or disk alarm blocks publishers: it stops reading their connections, so a
confirm never comes and a publish would wait for ever. RabbitMQ says so (`connection.blocked`) only
to a connection that publishes once the alarm is on, and aiormq then holds its `ready()` until
`connection.unblocked`. So `wait_publishable` (which ingest calls before it takes a file) waits at
most `broker_blocked_wait` for the broker to take publishes, and `publish_job` checks the same while
it waits for a confirm; either raises `BrokerBusy`, a 503 with `Retry-After`, rather than hang.
"""

from __future__ import annotations

import asyncio
import contextlib

from aio_pika.abc import AbstractChannel, AbstractExchange
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.app.problems import ServiceUnavailable
from common.messaging.broker import BROKER_ERRORS, JOB_LARGE, JOB_STANDARD, publish
from common.messaging.messages import PIPELINE_VERSION, ProcessJob

BUSY_RETRY_AFTER = 30
"""Seconds a client is asked to wait (`Retry-After`) when the broker takes no publishes."""
BLOCKED_WAIT = 2.0
"""Seconds a publish waits for a blocked (or reconnecting) broker: the default of `BROKER_BLOCKED_WAIT`."""


class BrokerBusy(ServiceUnavailable):
    """RabbitMQ takes no publishes now (a memory or disk alarm blocks publishers, or it is unreachable): 503, with
    `Retry-After`. Raised before an upload's file is taken when it can be, so nothing is half-done."""

    def __init__(self, detail: str, *, retry_after: int = BUSY_RETRY_AFTER) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class JobRoutingSettings(BaseSettings):
    """Where a job goes (the size above which it goes to the large-jobs queue) and how long its publish may wait
    for a broker that blocks publishers; read by ingest and results_service alike."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    large_job_bytes: int = Field(
        default=256 * 1024**2,
        ge=1,
        description="Jobs whose estimated memory (decoded pixels and encoded frame, `common.dicom.cost`) is larger "
        "than this go to the large-jobs queue (`LARGE_JOB_BYTES`).",
    )
    broker_blocked_wait: float = Field(
        default=BLOCKED_WAIT,
        gt=0,
        description="Seconds a publish waits while RabbitMQ blocks publishers (memory or disk alarm) or reconnects "
        "before the upload is answered 503 with Retry-After (`BROKER_BLOCKED_WAIT`).",
    )


def job_message_id(instance_id: str) -> str:
    """The idempotency key of an instance's job for this pipeline version (the same whoever publishes it)."""
    return f"{instance_id}.job.{PIPELINE_VERSION}"


def build_job(
    *,
    instance_id: str,
    upload_id: str,
    owner: str,
    sha256: str,
    size: int,
    sop_class_uid: str,
    transfer_syntax_uid: str,
    cost_bytes: int | None,
) -> ProcessJob:
    """The job of one instance, as ingest (fresh from validation) and the reconciler (from its row) publish it:
    its message id, and the memory estimate of `common.dicom.cost` (None only for an instance registered before
    estimates were recorded; the processor then estimates it itself)."""
    return ProcessJob(
        message_id=job_message_id(instance_id),
        instance_id=instance_id,
        upload_id=upload_id,
        owner=owner,
        sha256=sha256,
        size=size,
        sop_class_uid=sop_class_uid,
        transfer_syntax_uid=transfer_syntax_uid,
        cost_bytes=cost_bytes,
    )


def routing_cost(job: ProcessJob) -> int:
    """What size routing compares: the job's memory estimate, or its file size for a job that has none."""
    return job.cost_bytes if job.cost_bytes is not None else job.size


def job_routing_key(cost: int, large_job_bytes: int) -> str:
    """`job.large` for a job whose estimated memory (`routing_cost`) is larger than `large_job_bytes`, else
    `job.standard`. The reconciler's backlog query applies the same comparison to `COALESCE(cost_bytes, size)`."""
    return JOB_LARGE if cost > large_job_bytes else JOB_STANDARD


async def wait_publishable(exchange: AbstractExchange, wait: float = BLOCKED_WAIT) -> None:
    """Return once the broker takes publishes on `exchange`'s connection (at once, as a rule); BrokerBusy after
    `wait` seconds of a blocked or lost connection."""
    channel = getattr(exchange, "channel", None)  # aio-pika's exchanges keep their channel; its ABC does not say so
    if not isinstance(channel, AbstractChannel):
        raise TypeError(f"{exchange!r} has no channel")
    try:
        async with asyncio.timeout(wait):
            underlay = await channel.get_underlay_channel()
            await underlay.connection.ready()  # connected and not blocked (aiormq's public wait)
    except TimeoutError as exc:
        raise BrokerBusy(
            "RabbitMQ takes no messages now (a memory or disk alarm blocks publishers, or the connection is being "
            f"restored); retry in {BUSY_RETRY_AFTER} s"
        ) from exc
    except BROKER_ERRORS as exc:
        raise BrokerBusy(f"RabbitMQ is unreachable ({type(exc).__name__}); retry in {BUSY_RETRY_AFTER} s") from exc


async def publish_job(
    exchange: AbstractExchange, job: ProcessJob, large_job_bytes: int, *, blocked_wait: float = BLOCKED_WAIT
) -> str:
    """Publish the job to its jobs queue (and results_service's copy), confirmed; returns the routing key.

    Waits for the confirm as long as the caller lets it, except when the broker blocks publishers: then
    BrokerBusy after `blocked_wait` seconds. A job sent just before a block is in the broker's socket and
    routed when the block ends; if not, its instance stays `received` and the reconciler publishes it again
    (same message id).
    """
    routing_key = job_routing_key(routing_cost(job), large_job_bytes)
    await wait_publishable(exchange, blocked_wait)
    confirm = asyncio.ensure_future(publish(exchange, job, routing_key))
    try:
        while not confirm.done():
            await asyncio.wait([confirm], timeout=blocked_wait)
            if not confirm.done():
                await wait_publishable(exchange, blocked_wait)
        confirm.result()
    finally:
        if not confirm.done():
            confirm.cancel()
            with contextlib.suppress(asyncio.CancelledError, *BROKER_ERRORS):
                await confirm
    return routing_key
