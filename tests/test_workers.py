"""The live worker list: processors' heartbeats reach results_service's registry, which answers `GET /api/workers`.

Real broker and database: a processor app (the production factory) publishes its heartbeats on this test's prefix
and results_service (the production factory) lists it with its admission figures; its clean stop removes it at
once; a worker that goes silent leaves the list after `WORKER_STALE_AFTER` on a clock the test moves. Both
`/metrics` show the same figures. The intervals are an hour, so every change seen here was caused by what the
test did, never by time passing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractChannel

from common.messaging.broker import WORKER_HEARTBEAT, Topology, to_amqp
from common.messaging.messages import WorkerHeartbeat
from processor_service.admission import Admission
from processor_service.heartbeat import available_decoders
from processor_service.keys import admission_key
from processor_service.main import init_app as init_processor
from processor_service.settings import ProcessorSettings
from processor_service.usage import FixedUsage, Usage
from results_service.main import init_app as init_results
from results_service.settings import ResultsSettings
from results_service.workers import WorkerRegistry, worker_registry_key
from tests.fake_clock import FakeClock
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    eventually,
    get_json,
    results_settings_fixture,
    topology_fixture,
)
from tests.service_auth import signing

HOUR = 3600.0


def heartbeat(worker: str = "host-a:1", *, stopping: bool = False, **overrides: Any) -> WorkerHeartbeat:
    fields: dict[str, Any] = {
        "worker": worker,
        "host": worker.split(":")[0],
        "pid": 1,
        "started_at": datetime.now(UTC),
        "queues": ["standard"],
        "memory_budget_bytes": 1024**3,
        "cpu_slots": 2,
        "reserved_bytes": 0,
        "jobs_in_flight": 0,
        "cpu_percent": 0.0,
        "memory_bytes": 100 * 1024**2,
        "stopping": stopping,
    }
    return WorkerHeartbeat(**{**fields, **overrides})


def metric(text: str, name: str) -> float:
    """The value of an unlabelled metric in a Prometheus text exposition."""
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} is not exposed"
    return float(match.group(1))


async def workers(client: Any) -> dict[str, Any]:
    status, body = await get_json(client, "/api/workers", "an-admin", role="admin")
    assert status == 200, body
    result: dict[str, Any] = body
    return result


def test_a_silent_worker_is_listed_until_the_bound_and_not_after() -> None:
    clock = FakeClock()
    registry = WorkerRegistry(stale_after=15.0, clock=clock)
    registry.record(heartbeat("a:1"))
    clock.advance(10)
    registry.record(heartbeat("b:2"))
    clock.advance(5)
    assert [s.heartbeat.worker for s in registry.live()] == ["a:1", "b:2"]
    clock.advance(0.5)
    assert [s.heartbeat.worker for s in registry.live()] == ["b:2"]


def test_a_late_older_heartbeat_changes_nothing_and_a_stopping_one_removes_the_worker() -> None:
    registry = WorkerRegistry(stale_after=15.0, clock=FakeClock())
    newer = heartbeat("a:1", jobs_in_flight=2)
    older = heartbeat("a:1", jobs_in_flight=1, created_at=datetime(2020, 1, 1, tzinfo=UTC))
    registry.record(newer)
    registry.record(older)
    [sighting] = registry.live()
    assert sighting.heartbeat.jobs_in_flight == 2
    registry.record(heartbeat("a:1", stopping=True))
    assert registry.live() == []


def test_the_decoders_are_what_pydicom_can_decode_here() -> None:
    decoders = {d.transfer_syntax_uid: d for d in available_decoders()}
    assert "1.2.840.10008.1.2.1" in decoders  # explicit VR little endian: native, no plugin needed
    assert decoders["1.2.840.10008.1.2.1"].plugins == []
    assert "pylibjpeg" in decoders["1.2.840.10008.1.2.4.90"].plugins  # JPEG 2000, through pylibjpeg-openjpeg


async def test_a_processor_is_listed_with_its_admission_figures_and_leaves_at_once_when_it_stops(
    results_settings: ResultsSettings, topology: Topology, aiohttp_client: Any, tmp_path: Path
) -> None:
    results = await aiohttp_client(
        init_results(results_settings.model_copy(update={"worker_heartbeat_interval": HOUR})), middlewares=signing()
    )
    processor_settings = ProcessorSettings(
        amqp_prefix=results_settings.amqp_prefix,
        job_delivery_limit=results_settings.job_delivery_limit,
        blob_dir=str(tmp_path / "blobs"),
        processor_concurrency=1,
        processor_queues=["standard", "large"],
        worker_heartbeat_interval=HOUR,
        shutdown_timeout=5,
        processor_usage_interval=0.05,
    )
    usage = Usage(cpu_percent=37.5, memory_bytes=300 * 1024**2)
    sampler = FixedUsage(usage)
    processor = await aiohttp_client(init_processor(processor_settings, sampler=sampler))
    admission: Admission = processor.app[admission_key]

    async def listed() -> bool:
        return len((await workers(results))["items"]) == 1

    await eventually(listed)
    body = await workers(results)
    [worker] = body["items"]
    assert worker["queues"] == ["standard", "large"]
    assert worker["memory_budget_bytes"] == admission.memory_budget
    assert worker["cpu_slots"] == admission.cpu_slots
    assert worker["reserved_bytes"] == admission.reserved_bytes == 0
    assert worker["jobs_in_flight"] == admission.jobs_in_flight == 0
    assert worker["paused"] is False and worker["pause_reason"] is None
    assert worker["cpu_percent"] == usage.cpu_percent and worker["memory_bytes"] == usage.memory_bytes
    assert {d["transfer_syntax_uid"] for d in worker["decoders"]} >= {"1.2.840.10008.1.2", "1.2.840.10008.1.2.5"}
    assert body["summary"]["workers"] == 1
    assert body["summary"]["memory_budget_bytes"] == admission.memory_budget
    assert body["stale_after_seconds"] == 3 * HOUR

    processor_metrics = await (await processor.get("/metrics")).text()
    assert metric(processor_metrics, "dicomflow_worker_memory_budget_bytes") == admission.memory_budget
    assert metric(processor_metrics, "dicomflow_worker_cpu_slots") == admission.cpu_slots
    assert metric(processor_metrics, "dicomflow_worker_reserved_bytes") == 0
    assert metric(processor_metrics, "dicomflow_worker_jobs_in_flight") == 0
    assert metric(processor_metrics, "dicomflow_worker_paused") == 0
    assert metric(processor_metrics, "dicomflow_worker_cpu_percent") == usage.cpu_percent
    assert metric(processor_metrics, "dicomflow_worker_memory_bytes") == usage.memory_bytes
    assert metric(await (await results.get("/metrics")).text(), "dicomflow_workers_live") == 1

    # Over its memory limit, the processor pauses and says so at once (the next interval is an hour away); back
    # under, it resumes and says so too.
    sampler.usage = Usage(cpu_percent=0.0, memory_bytes=admission.limits.memory_bytes + 1)

    async def paused() -> bool:
        [listed] = (await workers(results))["items"]
        return bool(listed["paused"]) and "memory" in str(listed["pause_reason"])

    await eventually(paused)
    assert (await workers(results))["summary"]["paused"] == 1
    sampler.usage = usage

    async def resumed() -> bool:
        [listed] = (await workers(results))["items"]
        return listed["paused"] is False and listed["pause_reason"] is None

    await eventually(resumed)

    await processor.close()  # a clean stop: its last heartbeat says so; the next one would be an hour away

    async def gone() -> bool:
        return (await workers(results))["items"] == []

    await eventually(gone)
    assert metric(await (await results.get("/metrics")).text(), "dicomflow_workers_live") == 0


async def test_a_worker_that_stops_reporting_leaves_the_list_after_the_stale_bound(
    results_settings: ResultsSettings, topology: Topology, channel: AbstractChannel, aiohttp_client: Any
) -> None:
    settings = results_settings.model_copy(update={"worker_heartbeat_interval": 5.0, "worker_stale_after": 15.0})
    results = await aiohttp_client(init_results(settings), middlewares=signing())
    clock = FakeClock()
    results.app[worker_registry_key].clock = clock
    # One heartbeat, as a worker sends it, then silence (a worker killed or cut off).
    await topology.exchange.publish(
        to_amqp(heartbeat("silent:7", jobs_in_flight=3), expiration=15.0), routing_key=WORKER_HEARTBEAT
    )

    async def listed() -> bool:
        return [w["worker"] for w in (await workers(results))["items"]] == ["silent:7"]

    await eventually(listed)
    assert (await workers(results))["summary"]["jobs_in_flight"] == 3
    clock.advance(15.0)
    assert [w["worker"] for w in (await workers(results))["items"]] == ["silent:7"]
    clock.advance(0.1)
    assert (await workers(results))["items"] == []
