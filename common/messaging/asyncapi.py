"""The AsyncAPI 3.0 document of every message the services exchange over RabbitMQ, generated in code.

Channels are the routing keys and exchanges of `common.messaging.broker`'s topology (their names
are built by the same `TopologyNames`, with the deployment's prefix written `{prefix}`); messages
are the pydantic models of `common.messaging.messages`, their payload schemas made by pydantic
(`models_json_schema`), so the document cannot drift from what is validated. Every message carries
the AMQP properties `to_amqp` sets (`message_id`, `type` = the model's `kind`, persistent JSON)
and the correlation id header. The gateway serves the document at `GET /api/asyncapi.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from common.messaging.broker import (
    CORRELATION_AMQP_HEADER,
    JOB_LARGE,
    JOB_STANDARD,
    RESULT_PATTERN,
    STATUS_PATTERN,
    WORKER_HEARTBEAT,
    TopologyNames,
)
from common.messaging.messages import (
    AUDIT_UPLOAD_STOP,
    InstanceStatus,
    ProcessJob,
    ProcessResult,
    StatusChanges,
    StatusEvent,
    UploadStopRecord,
    WorkerHeartbeat,
)

ASYNCAPI_VERSION = "3.0.0"
AMQP_BINDING_VERSION = "0.3.0"
REF_TEMPLATE = "#/components/schemas/{model}"
PREFIX = "{prefix}"
# The names of one deployment, with its prefix as a placeholder (`AMQP_PREFIX`).
NAMES = TopologyNames(PREFIX)
MODELS: tuple[type[BaseModel], ...] = (
    ProcessJob,
    StatusEvent,
    ProcessResult,
    StatusChanges,
    UploadStopRecord,
    WorkerHeartbeat,
)

HEADERS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        CORRELATION_AMQP_HEADER: {
            "type": "string",
            "description": "The correlation id of the HTTP request (`X-Request-ID`) or message that caused this one; "
            "consumers bind it to their logs.",
        }
    },
}


@dataclass(frozen=True)
class Channel:
    """One route through the broker: where a publisher sends a model and which queues receive it."""

    id: str
    address: str
    exchange: str
    exchange_type: str
    queues: dict[str, str]
    """Queue name → who consumes it."""
    models: tuple[type[BaseModel], ...]
    senders: tuple[str, ...]
    description: str
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)


def _job_channel(routing_key: str, queue: str, size: str) -> Channel:
    return Channel(
        id=routing_key.replace(".", "_"),
        address=routing_key,
        exchange=NAMES.exchange,
        exchange_type="topic",
        queues={queue: "processor_service", NAMES.queued: "results_service (moves the instance to queued)"},
        models=(ProcessJob,),
        senders=("ingest_service", "results_service (reconciler)"),
        description=f"Process one stored instance ({size}); the broker also puts a copy in `{NAMES.queued}`.",
    )


def _worker_channel(
    name: str,
    pattern: str,
    model: type[BaseModel],
    queue: str,
    description: str,
    about_status: str,
    statuses: list[InstanceStatus],
) -> Channel:
    """What processor_service sends results_service, routed by `<kind>.<status>` (the queue binds `pattern`)."""
    return Channel(
        id=name,
        address=pattern.replace("#", "{status}"),
        exchange=NAMES.exchange,
        exchange_type="topic",
        queues={queue: "results_service"},
        models=(model,),
        senders=("processor_service",),
        description=description,
        parameters={"status": {"enum": [status.value for status in statuses], "description": about_status}},
    )


def channels() -> list[Channel]:
    """Every channel of the topology, in the order a file travels through them."""
    return [
        _job_channel(JOB_STANDARD, NAMES.jobs, "a file up to `LARGE_JOB_BYTES`"),
        _job_channel(JOB_LARGE, NAMES.jobs_large, "a file larger than `LARGE_JOB_BYTES`"),
        _worker_channel(
            "status",
            STATUS_PATTERN,
            StatusEvent,
            NAMES.status,
            "A worker took a job (`status.processing`).",
            "The new status.",
            list(InstanceStatus),
        ),
        _worker_channel(
            "result",
            RESULT_PATTERN,
            ProcessResult,
            NAMES.results,
            "The outcome of one job.",
            "The job's outcome.",
            [InstanceStatus.DONE, InstanceStatus.FAILED],
        ),
        Channel(
            id="events",
            address=NAMES.events,
            exchange=NAMES.events,
            exchange_type="fanout",
            queues={f"{NAMES.events}.gateway.{{replica}}": "every gateway replica with a live-feed socket open"},
            models=(StatusChanges,),
            senders=("results_service",),
            description="The status changes results_service committed, announced for the live feeds (best effort: "
            "unroutable when no replica listens).",
        ),
        Channel(
            id="audit",
            address=AUDIT_UPLOAD_STOP,
            exchange=NAMES.exchange,
            exchange_type="topic",
            queues={NAMES.audit: "results_service (writes the record once)"},
            models=(UploadStopRecord,),
            senders=("ingest_service (when results_service did not take the record at once)",),
            description="An audit record kept durably until results_service writes it.",
        ),
        Channel(
            id="worker_heartbeat",
            address=WORKER_HEARTBEAT,
            exchange=NAMES.exchange,
            exchange_type="topic",
            queues={f"{NAMES.workers}.results-{{replica}}": "every results_service replica (the live worker list)"},
            models=(WorkerHeartbeat,),
            senders=("processor_service",),
            description="A worker's identity and load, every `WORKER_HEARTBEAT_INTERVAL` seconds, and a last one "
            "marked `stopping` on a clean shutdown. Transient: not persistent, expiring after `WORKER_STALE_AFTER` "
            "seconds, never dead-lettered; unroutable (and dropped) while no replica listens.",
        ),
        Channel(
            id="dead_letters",
            address=NAMES.dlx,
            exchange=NAMES.dlx,
            exchange_type="fanout",
            queues={NAMES.parked: "operators (`dicomflow jobs`)", NAMES.deadletters: "results_service (fails the job)"},
            models=(ProcessJob, StatusEvent, ProcessResult, UploadStopRecord),
            senders=("RabbitMQ (rejected, or redelivered more than `JOB_DELIVERY_LIMIT` times)",),
            description="Whatever the quorum queues dead-letter, unchanged, with its original routing key.",
        ),
    ]


def _message(model: type[BaseModel]) -> dict[str, Any]:
    kind = model.model_fields["kind"].default
    return {
        "name": model.__name__,
        "title": model.__name__,
        "summary": (model.__doc__ or "").strip().splitlines()[0],
        "contentType": "application/json",
        "headers": HEADERS_SCHEMA,
        "payload": {"$ref": REF_TEMPLATE.format(model=model.__name__)},
        "correlationId": {"location": f"$message.header#/{CORRELATION_AMQP_HEADER}"},
        "bindings": {"amqp": {"messageType": kind, "bindingVersion": AMQP_BINDING_VERSION}},
    }


def _channel(channel: Channel) -> dict[str, Any]:
    queues = "; ".join(f"`{queue}` ← {consumer}" for queue, consumer in channel.queues.items())
    result: dict[str, Any] = {
        "address": channel.address,
        "title": channel.id,
        "description": f"{channel.description} Queues: {queues}.",
        "messages": {model.__name__: {"$ref": f"#/components/messages/{model.__name__}"} for model in channel.models},
        "bindings": {
            "amqp": {
                "is": "routingKey",
                "exchange": {"name": channel.exchange, "type": channel.exchange_type, "durable": True, "vhost": "/"},
                "bindingVersion": AMQP_BINDING_VERSION,
            }
        },
    }
    parameters = dict(channel.parameters)
    if PREFIX in channel.address:
        parameters["prefix"] = {"description": "The deployment's `AMQP_PREFIX`."}
    if parameters:
        result["parameters"] = parameters
    return result


def _operations(channel: Channel) -> dict[str, dict[str, Any]]:
    messages = [{"$ref": f"#/channels/{channel.id}/messages/{model.__name__}"} for model in channel.models]
    ref = {"$ref": f"#/channels/{channel.id}"}
    return {
        f"send_{channel.id}": {
            "action": "send",
            "channel": ref,
            "summary": f"Published by {', '.join(channel.senders)}.",
            "messages": messages,
        },
        f"receive_{channel.id}": {
            "action": "receive",
            "channel": ref,
            "summary": f"Consumed by {'; '.join(channel.queues.values())}.",
            "messages": messages,
        },
    }


def asyncapi_document(version: str = "0.1.0") -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the topology and its messages."""
    all_channels = channels()
    _, definitions = models_json_schema([(model, "validation") for model in MODELS], ref_template=REF_TEMPLATE)
    operations: dict[str, Any] = {}
    for channel in all_channels:
        operations.update(_operations(channel))
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "dicomflow messages",
            "version": version,
            "description": "The messages dicomflow's services exchange over RabbitMQ. Every exchange and queue name "
            "starts with the deployment's `AMQP_PREFIX`, written `{prefix}` here. Bodies are JSON; consumers reject a "
            "body that does not validate (or an unknown `version`) to the dead-letter exchange.",
        },
        "defaultContentType": "application/json",
        "channels": {channel.id: _channel(channel) for channel in all_channels},
        "operations": operations,
        "components": {
            "messages": {model.__name__: _message(model) for model in MODELS},
            "schemas": definitions.get("$defs", {}),
        },
    }
