"""The audit trail loses nothing: the `upload.stop` record of an upload refused while results_service or its
database is down is kept in `P.audit` and written once results_service can, exactly once.

ingest reports the stop straight to results_service; when that fails it publishes the record (confirmed) to
`P.audit`, which results_service consumes (`results_service.audit_consumer`). The rows are read from
PostgreSQL, the queues from RabbitMQ; "stopped" is a results_service that is not running (its URL refuses
connections), "database down" a private PostgreSQL cluster that the test stops.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel
from aiohttp import web
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from common.messaging.asyncapi import asyncapi_document
from common.messaging.broker import Topology, declare_topology, delete_topology, open_channel, publish
from common.messaging.messages import AUDIT_UPLOAD_STOP, UploadStopRecord
from ingest_service.main import init_app as init_ingest
from ingest_service.settings import IngestSettings
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from single_host.processes import free_port
from tests.ingest_rig import uploader
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    LIMIT,
    channel_fixture,
    eventually,
    fetch,
    owner_fixture,
    results_settings_fixture,
)
from tests.private_postgres import PrivatePostgres
from tests.queue_helpers import take
from tests.registration_helpers import upload_records, who
from tests.service_auth import INGEST, signing
from tests.test_message_contracts import bind_channel, check

Client = TestClient[web.Request, web.Application]
LIMIT_BYTES = 100_000
HELD_RETRIES = LIMIT + 3  # more tries than the delivery limit would allow returns


async def ingest_client(aiohttp_client: Any, settings: ResultsSettings, results_url: str) -> Client:
    """An ingest app of the test's broker prefix, reporting to `results_url`, with a 100 000-byte upload limit."""
    ingest = IngestSettings(
        amqp_prefix=settings.amqp_prefix,
        job_delivery_limit=settings.job_delivery_limit,
        blob_dir=settings.blob_dir,
        results_url=results_url,
        results_timeout=5,
        upload_max_bytes=LIMIT_BYTES,
        retry_max_delay=0.2,
    )
    client: Client = await aiohttp_client(init_ingest(ingest), middlewares=signing(INGEST))
    return client


async def upload_over_the_limit(ingest: Client, owner: str, correlation: str) -> dict[str, Any]:
    """One file streamed without a length, twice the limit: ingest answers 413 while reading it."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(2 * LIMIT_BYTES // 10_000):
            yield b"\0" * 10_000

    headers = {**uploader(owner, correlation), "Content-Type": "application/dicom"}
    response = await ingest.post("/upload", data=chunks(), headers=headers)
    assert response.status == 413, await response.text()
    problem: dict[str, Any] = await response.json()
    assert problem["files"] == []
    return problem


async def waiting_in(channel: AbstractChannel, queue_name: str, expected: int) -> None:
    """Wait until the broker counts `expected` messages ready in the queue (a quorum queue's count follows its log
    shortly after the confirm)."""

    async def counted() -> bool:
        # On the raw channel: aio-pika's declare_queue keeps the first declaration's answer for a name.
        declared = await (await channel.get_underlay_channel()).queue_declare(queue_name, passive=True)
        return declared.message_count == expected

    await eventually(counted)


async def stop_times(database_url: str, upload_id: str) -> list[datetime]:
    """The `at` of the upload's audit rows."""
    rows = await fetch(database_url, "SELECT at FROM audit_events WHERE resource_id = $1", upload_id)
    return [row["at"] for row in rows]


async def test_an_upload_refused_while_results_service_is_stopped_is_recorded_once_it_is_back(
    channel: AbstractChannel, results_settings: ResultsSettings, owner: str, aiohttp_client: Any, aiohttp_server: Any
) -> None:
    topology = await declare_topology(channel, results_settings)
    document = asyncapi_document()
    copies = await bind_channel(channel, results_settings.amqp_prefix, document["channels"]["audit"])
    stopped = f"http://127.0.0.1:{free_port()}"  # results_service is not running: its port refuses connections
    ingest = await ingest_client(aiohttp_client, results_settings, stopped)
    correlation = f"c-{uuid.uuid4().hex}"

    problem = await upload_over_the_limit(ingest, owner, correlation)
    upload_id = problem["upload_id"]

    assert await upload_records(results_settings.database_url, upload_id) == []
    await waiting_in(channel, topology.names.audit, 1)  # kept by the broker, confirmed before the 413
    [copy] = await take(copies, 1)
    assert check(document, "audit", copy) == []
    stopped_at = UploadStopRecord.model_validate_json(copy.body).created_at

    server = await aiohttp_server(init_results(results_settings))  # results_service is back

    async def recorded() -> bool:
        return bool(await upload_records(results_settings.database_url, upload_id))

    await eventually(recorded)
    await server.close()  # nothing more can be written: what is in the table now is all there will be
    records = await upload_records(results_settings.database_url, upload_id)
    assert [(r["action"], r["outcome"], r["detail"]) for r in records] == [
        ("upload.stop", "failure", {"status": 413, "files": 0})
    ]
    assert who(records) == {(owner, f"{owner}@example.org", "203.0.113.7", correlation)}
    rows = await stop_times(results_settings.database_url, upload_id)
    assert rows == [stopped_at]  # the time the upload stopped, not the time it was written
    await waiting_in(channel, topology.names.audit, 0)  # acknowledged once written, not returned


async def test_a_stop_record_delivered_twice_and_reported_directly_is_written_once(
    channel: AbstractChannel, results_settings: ResultsSettings, owner: str, aiohttp_server: Any, aiohttp_client: Any
) -> None:
    """A redelivery (the write committed, the ack was lost) and a direct report that also went through."""
    topology = await declare_topology(channel, results_settings)
    upload_id = uuid.uuid4().hex
    record = UploadStopRecord(upload_id=upload_id, owner=owner, status=503, accepted=2, correlation_id="c-twice")
    server = await aiohttp_server(init_results(results_settings))
    with capture_logs() as logs:
        for _ in range(2):
            await publish(topology.exchange, record, AUDIT_UPLOAD_STOP)

        async def both_handled() -> bool:
            events = [e["event"] for e in logs if e.get("upload_id") == upload_id]
            return events.count("audit_record_written") + events.count("audit_record_duplicate") == 2

        await eventually(both_handled)
    results = await aiohttp_client(server, middlewares=signing())
    direct = await results.post(
        f"/internal/uploads/{upload_id}/stop", json=record.model_dump(mode="json", include={"owner", "status"})
    )
    assert direct.status == 204
    records = await upload_records(results_settings.database_url, upload_id)
    detail = {"status": 503, "files": 2, "accepted": 2}
    assert [(r["action"], r["detail"]) for r in records] == [("upload.stop", detail)]
    assert [e["event"] for e in logs if e.get("upload_id") == upload_id] == [
        "audit_record_written",
        "audit_record_duplicate",
    ]
    await server.close()
    await waiting_in(channel, topology.names.audit, 0)
    await take(topology.parked, 0)


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    with PrivatePostgres() as cluster:
        yield cluster


@pytest.fixture
async def outage_settings(postgres: PrivatePostgres, amqp_prefix: str, tmp_path: Path) -> ResultsSettings:
    return ResultsSettings(
        database_url=await postgres.create_database("dicomflow"),
        amqp_prefix=amqp_prefix,
        blob_dir=str(tmp_path / "blobs"),
        job_delivery_limit=LIMIT,
        shutdown_timeout=5,
        retry_max_delay=0.2,
    )


@pytest.fixture
async def outage_channel(outage_settings: ResultsSettings) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect_robust(outage_settings.amqp_url)
    async with connection:
        channel = await open_channel(connection)
        yield channel
        await delete_topology(channel, outage_settings.amqp_prefix)


async def test_an_upload_refused_during_a_database_outage_is_recorded_after_it_without_spending_attempts(
    postgres: PrivatePostgres,
    outage_settings: ResultsSettings,
    outage_channel: AbstractChannel,
    owner: str,
    aiohttp_server: Any,
    aiohttp_client: Any,
) -> None:
    """results_service runs, its database does not: the direct report fails, the record waits in `P.audit`, held
    by the consumer (never returned: the delivery limit is 1) until PostgreSQL is back."""
    topology: Topology = await declare_topology(outage_channel, outage_settings)
    server = await aiohttp_server(init_results(outage_settings))
    ingest = await ingest_client(aiohttp_client, outage_settings, str(server.make_url("")).rstrip("/"))

    await asyncio.to_thread(postgres.stop)
    with capture_logs() as logs:
        problem = await upload_over_the_limit(ingest, owner, "c-outage")

        def retries() -> int:
            held = [e["attempt"] for e in logs if e["event"] == "outage_retry" and e["work"] == "message upload_stop"]
            return max(held, default=0)

        async def held_long_enough() -> bool:
            return retries() >= HELD_RETRIES

        await eventually(held_long_enough)
        assert any(e["event"] == "audit_record_queued" for e in logs)
        await asyncio.to_thread(postgres.start)

        async def recorded() -> bool:
            return bool(await upload_records(outage_settings.database_url, problem["upload_id"]))

        await eventually(recorded)
    await server.close()
    records = await upload_records(outage_settings.database_url, problem["upload_id"])
    assert [(r["action"], r["detail"]) for r in records] == [("upload.stop", {"status": 413, "files": 0})]
    await waiting_in(outage_channel, topology.names.audit, 0)
    await take(topology.parked, 0)  # never returned past the limit
