"""What each service publishes validates against the AsyncAPI document the gateway serves.

The real publishers run against this run's RabbitMQ: ingest publishes the jobs of two uploads (one
routed standard, one large), the processor its status events and results, results_service its
`StatusChanges` announcements. A queue of the test is bound to each channel of the served document
(by its exchange and address), so a message sent with a routing key the document does not list
never reaches the test; each raw body is validated with `jsonschema` against its channel's
message schemas, and its AMQP type and headers against the message's bindings and headers.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aio_pika import ExchangeType, Message
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from jsonschema import Draft202012Validator

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.messaging.asyncapi import asyncapi_document
from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from processor_service.main import init_app as init_processor
from processor_service.settings import ProcessorSettings
from tests.ingest_rig import IngestRig, rig_fixture, uploader  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    owner_fixture,
    results_settings_fixture,
)
from tests.queue_helpers import drain, take

PUBLISHED = {"job_standard": 1, "job_large": 1, "status": 2, "result": 2}  # per channel, for two files
ANNOUNCED = 6  # status changes on the events channel: queued, processing and done of each file


@pytest.fixture
async def document(aiohttp_client: Any) -> dict[str, Any]:
    """The AsyncAPI document as the gateway serves it."""
    client = await aiohttp_client(init_gateway(GatewaySettings()))
    response = await client.get("/api/asyncapi.json")
    assert response.status == 200
    body: dict[str, Any] = await response.json()
    return body


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs_in(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [r for v in node.values() for r in refs_in(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs_in(v)]
    return []


async def bind_channel(channel: AbstractChannel, prefix: str, spec: dict[str, Any]) -> AbstractQueue:
    """A queue of the test that receives what the channel carries: its exchange, its address as a binding key."""
    exchange_spec = spec["bindings"]["amqp"]["exchange"]
    exchange_type = ExchangeType(exchange_spec["type"])
    exchange = await channel.declare_exchange(
        exchange_spec["name"].replace("{prefix}", prefix), exchange_type, durable=True, passive=True
    )
    routing_key = "" if exchange_type is ExchangeType.FANOUT else re.sub(r"\{[^}]+\}", "*", spec["address"])
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(exchange, routing_key)
    return queue


def check(document: dict[str, Any], channel_id: str, message: AbstractIncomingMessage) -> list[str]:
    """What in one raw message goes against its channel's contract."""
    problems = []
    body = json.loads(message.body)
    messages = [resolve(document, ref["$ref"]) for ref in document["channels"][channel_id]["messages"].values()]
    by_type = {spec["bindings"]["amqp"]["messageType"]: spec for spec in messages}
    spec = by_type.get(message.type or "")
    if spec is None:
        return [f"{channel_id}: AMQP type {message.type!r} is none of {sorted(by_type)}"]
    schema = {**spec["payload"], "components": document["components"]}
    problems += [f"{channel_id} body: {error.message}" for error in Draft202012Validator(schema).iter_errors(body)]
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in (message.headers or {}).items()}
    validator = Draft202012Validator(spec["headers"])
    problems += [f"{channel_id} headers: {error.message}" for error in validator.iter_errors(headers)]
    if message.content_type != spec["contentType"]:
        problems.append(f"{channel_id}: content type {message.content_type!r}")
    if message.message_id != body.get("message_id"):
        problems.append(f"{channel_id}: AMQP message_id differs from the body's")
    return problems


def test_every_reference_of_the_document_resolves() -> None:
    document = asyncapi_document()
    refs = refs_in(document)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        resolve(document, ref)
    assert document["asyncapi"] == "3.0.0"
    for operation in document["operations"].values():
        assert operation["action"] in ("send", "receive")


async def test_what_each_service_publishes_validates_against_the_served_asyncapi_document(
    document: dict[str, Any],
    rig: IngestRig,
    aiohttp_server: Any,
    owner: str,
    samples_dir: Path,
) -> None:
    prefix = rig.names.prefix
    queues = {cid: await bind_channel(rig.channel, prefix, spec) for cid, spec in document["channels"].items()}
    settings = {"amqp_prefix": prefix, "blob_dir": str(rig.blob_dir), "job_delivery_limit": 1, "shutdown_timeout": 5}
    processor = ProcessorSettings(processor_concurrency=1, processor_queues=["standard", "large"], **settings)
    await aiohttp_server(init_processor(processor))
    instances = []
    for name, large_job_bytes in (("sample-01-dicom.dcm", 256 * 1024**2), ("sample-02-dicom.dcm", 1)):
        ingest = await rig.make(large_job_bytes=large_job_bytes)
        response = await ingest.post(
            "/api/uploads",
            data=io.BytesIO((samples_dir / name).read_bytes()),
            headers={**uploader(owner, correlation_id=f"contract-{name}"), "Content-Type": "application/dicom"},
        )
        assert response.status == 202 and response.content_type != PROBLEM_CONTENT_TYPE, await response.text()
        [file] = (await response.json())["files"]
        instances.append(file["instance_id"])
    for instance_id in instances:
        await rig.wait_status(instance_id, "done")
    # Everything above was published before results_service stored `done`; its last announcement may follow.
    received = {cid: await take(queues[cid], count) for cid, count in PUBLISHED.items()}
    received["events"] = await take(queues["events"], ANNOUNCED, weight=lambda m: len(json.loads(m.body)["events"]))
    received["dead_letters"] = await take(queues["dead_letters"], 0)
    received["audit"] = await take(queues["audit"], 0)  # every upload was answered 202: no record waits
    received["worker_heartbeat"] = await drain(queues["worker_heartbeat"])  # one at start, more every interval
    assert received["worker_heartbeat"], "the processor sent no heartbeat"
    assert set(received) == set(queues)
    problems = [problem for cid, messages in received.items() for m in messages for problem in check(document, cid, m)]
    assert problems == []
    correlated = {(m.headers or {}).get("x-correlation-id") for m in received["job_standard"] + received["job_large"]}
    assert correlated == {"contract-sample-01-dicom.dcm", "contract-sample-02-dicom.dcm"}


async def test_a_body_off_contract_is_caught(channel: AbstractChannel, document: dict[str, Any]) -> None:
    """The check above is not vacuous: a job without its blob key, or an unknown type, is reported."""
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    job = {"kind": "process_job", "message_id": "m1", "instance_id": "i", "upload_id": "u", "owner": "o"}
    for message_type in ("process_job", "surprise"):
        body = json.dumps(job).encode()
        amqp = Message(body, content_type="application/json", message_id="m1", type=message_type)
        await channel.default_exchange.publish(amqp, routing_key=queue.name)
    first, second = await take(queue, 2)
    assert any("'sha256' is a required property" in problem for problem in check(document, "job_standard", first))
    assert check(document, "job_standard", second) == ["job_standard: AMQP type 'surprise' is none of ['process_job']"]
