"""Admission by cost and overload protection, on the real RabbitMQ with app-level processors.

The processors' worker pool is replaced by a gated one: a job "runs" until the test opens its gate, so which
jobs run at once is decided by admission alone, never by the machine's speed. Overload readings are fed
through the processor's injectable sampler. Nothing here waits for something NOT to happen: a message that
must stay queued is proven to by the queue having no consumer at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection

from common.app.secret_settings import BlobKeySettings
from common.messaging.broker import (
    JOB_LARGE,
    JOB_STANDARD,
    Topology,
    declare_topology,
    delete_topology,
    open_channel,
    publish,
    read_queue,
)
from common.messaging.messages import ImageResult, InstanceStatus, ProcessJob, ProcessResult
from common.storage.blobs import BlobStore
from processor_service.admission import Admission
from processor_service.imaging import Analysis
from processor_service.keys import admission_key
from processor_service.main import init_app
from processor_service.pool import WorkerPool
from processor_service.settings import ProcessorSettings
from processor_service.usage import FixedUsage, Usage
from processor_service.work import measure_blob
from tests.pipeline_helpers import eventually
from tests.queue_helpers import take

LIMIT = 5
UNLIMITED = 10**15


class GatedPool(WorkerPool):
    """A pool whose jobs run until the test opens their gate (by blob key); no worker process is started."""

    def __init__(self, size: int) -> None:  # no pebble pool: nothing here runs in a process
        self.size = size
        self.closed = False
        self.running: set[str] = set()
        self.finished: list[str] = []
        self.together: list[frozenset[str]] = []
        """The set of running jobs each time one started."""
        self._gates: dict[str, asyncio.Event] = {}
        self.always_open: Callable[[str], bool] = lambda _: False

    def gate(self, sha256: str) -> asyncio.Event:
        return self._gates.setdefault(sha256, asyncio.Event())

    def release(self, sha256s: set[str] | None = None) -> None:
        """Let these running jobs (all running ones by default) finish."""
        for sha256 in set(self.running) if sha256s is None else sha256s:
            self.gate(sha256).set()

    async def start(self) -> None:
        return None

    async def run(self, fn: Callable[..., Any], *args: object, timeout: float) -> Any:
        if fn is not measure_blob:  # the estimate of a job published without one: run for real, here
            return fn(*args)
        sha256 = str(args[1])
        self.running.add(sha256)
        self.together.append(frozenset(self.running))
        try:
            if not self.always_open(sha256):
                await self.gate(sha256).wait()
        finally:
            self.running.discard(sha256)
        self.finished.append(sha256)
        return Analysis(ImageResult(has_pixel_data=False, note="gated", processing_ms=0.0, worker=str(args[2])), None)

    async def close(self) -> None:
        self.closed = True


def job(kind: str, number: int, cost: int) -> ProcessJob:
    """A job whose blob key says its kind: `a…` large, `b…` small (both hex)."""
    return ProcessJob(
        instance_id=f"{kind}{number:031x}",
        upload_id="u" * 32,
        owner="alice",
        sha256=f"{kind}{number:063x}",
        size=1,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        cost_bytes=cost,
    )


@pytest.fixture
async def connection() -> AsyncIterator[AbstractRobustConnection]:
    async with await aio_pika.connect_robust("amqp://guest:guest@127.0.0.1:5672/") as connection:
        yield connection


@pytest.fixture
async def channel(connection: AbstractRobustConnection, amqp_prefix: str) -> AsyncIterator[AbstractChannel]:
    channel = await open_channel(connection)
    yield channel
    await delete_topology(channel, amqp_prefix)


@pytest.fixture
async def topology(channel: AbstractChannel, amqp_prefix: str) -> Topology:
    return await declare_topology(channel, ProcessorSettings(amqp_prefix=amqp_prefix, job_delivery_limit=LIMIT))


Processor = tuple[Admission, GatedPool, FixedUsage]
StartProcessor = Callable[..., Awaitable[Processor]]


@pytest.fixture
def start_processor(amqp_prefix: str, tmp_path: Path, aiohttp_client: Any, topology: Topology) -> StartProcessor:
    async def start(**overrides: Any) -> Processor:
        fields: dict[str, Any] = {
            "amqp_prefix": amqp_prefix,
            "blob_dir": str(tmp_path / "blobs"),
            "job_delivery_limit": LIMIT,
            "processor_cpu_slots": 8,
            "processor_memory_limit_bytes": UNLIMITED,
            "processor_cpu_limit_percent": float(UNLIMITED),
            "processor_usage_interval": 0.02,
            "shutdown_timeout": 5.0,
        }
        fields.update(overrides)
        pools: list[GatedPool] = []

        def gated(size: int) -> GatedPool:
            pools.append(GatedPool(size))
            return pools[0]

        sampler = FixedUsage()
        client = await aiohttp_client(init_app(ProcessorSettings(**fields), sampler=sampler, pool_factory=gated))
        return client.server.app[admission_key], pools[0], sampler

    return start


async def results_of(topology: Topology, count: int) -> list[ProcessResult]:
    return [ProcessResult.model_validate_json(m.body) for m in await take(topology.results, count)]


async def depth(connection: AbstractRobustConnection, queue: AbstractQueue) -> tuple[int, int]:
    """(ready messages, consumers) of `queue` now."""
    return await read_queue(connection, queue.name)


async def test_a_small_budget_never_runs_two_large_jobs_at_once_while_small_jobs_keep_flowing(
    start_processor: StartProcessor, topology: Topology, connection: AbstractRobustConnection
) -> None:
    admission, pool, _ = await start_processor(
        processor_queues=["standard", "large"], processor_memory_budget_bytes=1000, processor_cpu_slots=4
    )
    pool.always_open = lambda sha256: sha256.startswith("b")  # small jobs finish at once; large ones when released
    reserved: list[int] = []
    admission.subscribe(lambda: reserved.append(admission.reserved_bytes))
    for number in range(2):
        await publish(topology.exchange, job("a", number, 600), JOB_LARGE)
    # Both large jobs are here (none left ready in the queue): one runs, the other is held.
    await eventually(async_true(lambda: len(pool.running) == 1))
    await eventually(lambda: _ready_is(connection, topology.jobs_large, 0))
    [large_running] = pool.running
    smalls = [job("b", number, 50) for number in range(12)]
    for small in smalls:
        await publish(topology.exchange, small, JOB_STANDARD)
    assert {r.instance_id for r in await results_of(topology, len(smalls))} == {s.instance_id for s in smalls}
    assert pool.running == {large_running}  # every small job ran and finished while the large one ran
    pool.release({large_running})
    await eventually(async_true(lambda: len(pool.running) == 1 and large_running not in pool.running))
    pool.release()
    results = await results_of(topology, 2)
    assert all(r.status is InstanceStatus.DONE for r in results)
    assert max(sum(s.startswith("a") for s in running) for running in pool.together) == 1
    assert max(reserved) <= 1000 and admission.peak_reserved_bytes <= 1000
    await take(topology.parked, 0)


def async_true(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def checked() -> bool:
        return check()

    return checked


@pytest.mark.parametrize("published_to", [JOB_LARGE, JOB_STANDARD])
async def test_a_job_larger_than_every_budget_fails_with_the_budget_it_needs_and_is_not_parked(
    start_processor: StartProcessor, topology: Topology, published_to: str
) -> None:
    """From the standard queue it is passed on to the large-jobs queue first; there, it fails."""
    admission, pool, _ = await start_processor(
        processor_queues=["standard", "large"], processor_memory_budget_bytes=1000
    )
    await publish(topology.exchange, job("a", 1, 5000), published_to)
    [result] = await results_of(topology, 1)
    assert result.status is InstanceStatus.FAILED
    assert result.reason is not None
    assert "needs an estimated 5000 bytes" in result.reason and "budget" in result.reason
    assert "PROCESSOR_MEMORY_BUDGET_BYTES of at least 5000" in result.reason
    assert pool.together == [] and admission.reserved_bytes == 0
    await take(topology.parked, 0)
    await take(topology.jobs, 0)
    await take(topology.jobs_large, 0)


async def test_a_processor_over_its_memory_limit_pauses_keeps_its_running_job_and_resumes_under_it(
    start_processor: StartProcessor, topology: Topology, connection: AbstractRobustConnection
) -> None:
    admission, pool, sampler = await start_processor(
        processor_memory_budget_bytes=1000, processor_memory_limit_bytes=1000
    )
    await publish(topology.exchange, job("a", 0, 100), JOB_STANDARD)
    await eventually(async_true(lambda: len(pool.running) == 1))  # in flight when the pause comes
    sampler.usage = Usage(cpu_percent=5.0, memory_bytes=1500)
    await eventually(async_true(lambda: admission.paused))
    assert admission.pause_reason is not None and "memory" in admission.pause_reason
    pool.release()  # the job in flight ends normally
    [first] = await results_of(topology, 1)
    assert (first.instance_id, first.status) == (job("a", 0, 100).instance_id, InstanceStatus.DONE)
    # RabbitMQ counts a cancelled consumer until its last delivery is settled; then none is left: nothing can be taken.
    await eventually(lambda: _consumers_are(connection, topology.jobs, 0))
    waiting = [job("b", number, 10) for number in range(3)]
    for queued in waiting:
        await publish(topology.exchange, queued, JOB_STANDARD)
    assert await depth(connection, topology.jobs) == (3, 0)
    hovering = Usage(cpu_percent=5.0, memory_bytes=950)  # under the limit, not under 90% of it: still paused
    sampler.usage = hovering
    await eventually(async_true(lambda: admission.last_usage == hovering))
    assert admission.paused and await depth(connection, topology.jobs) == (3, 0)
    pool.always_open = lambda _: True
    sampler.usage = Usage(cpu_percent=5.0, memory_bytes=800)
    results = await results_of(topology, 3)
    assert {r.instance_id for r in results} == {w.instance_id for w in waiting}
    assert not admission.paused


async def _consumers_are(connection: AbstractRobustConnection, queue: AbstractQueue, count: int) -> bool:
    return (await depth(connection, queue))[1] == count


async def _ready_is(connection: AbstractRobustConnection, queue: AbstractQueue, expected: int) -> bool:
    return (await depth(connection, queue))[0] == expected


async def test_two_processors_of_different_budgets_share_a_batch_in_proportion_to_their_budgets(
    start_processor: StartProcessor, topology: Topology, connection: AbstractRobustConnection
) -> None:
    """Budgets 400 and 200, every job 100: while jobs wait, the first runs 4 at a time and the second 2."""
    big, big_pool, _ = await start_processor(processor_memory_budget_bytes=400)
    small, small_pool, _ = await start_processor(processor_memory_budget_bytes=200)
    batch = [job("b", number, 100) for number in range(30)]
    for queued in batch:
        await publish(topology.exchange, queued, JOB_STANDARD)
    for round_ in range(1, 4):  # rounds while the queue still holds more than both can take
        await eventually(async_true(lambda: len(big_pool.running) == 4 and len(small_pool.running) == 2))
        assert (big.reserved_bytes, small.reserved_bytes) == (400, 200)
        big_pool.release()
        small_pool.release()
        done = (4 * round_, 2 * round_)
        await eventually(async_true(lambda: (len(big_pool.finished), len(small_pool.finished)) == done))  # noqa: B023
    assert (len(big_pool.finished), len(small_pool.finished)) == (12, 6)  # exactly 2:1, as the budgets
    big_pool.always_open = small_pool.always_open = lambda _: True
    big_pool.release()
    small_pool.release()
    assert len(await results_of(topology, len(batch))) == len(batch)
    # The tail (the last round) may go either way by at most what one processor holds: 4 running and 1 held.
    assert abs(len(big_pool.finished) - 20) <= 5
    assert max(len(r) for r in big_pool.together) == 4 and max(len(r) for r in small_pool.together) == 2


async def test_a_job_published_without_an_estimate_reserves_the_one_read_from_its_files_header(
    start_processor: StartProcessor, topology: Topology, tmp_path: Path, samples_dir: Path
) -> None:
    store = BlobStore(tmp_path / "blobs", BlobKeySettings().keyring())  # the processor's blob folder and keys
    data = (samples_dir / "sample-02-dicom.dcm").read_bytes()
    sha256 = await store.put_bytes(data)
    cost = 512 * 512 * 96 + 17_734  # tests/test_job_cost.py: SAMPLE_02_COST
    admission, pool, _ = await start_processor(processor_memory_budget_bytes=cost)
    pool.always_open = lambda _: True
    legacy = job("b", 1, 0).model_copy(update={"sha256": sha256, "size": len(data), "cost_bytes": None})
    await publish(topology.exchange, legacy, JOB_STANDARD)
    [result] = await results_of(topology, 1)
    assert (result.instance_id, result.status) == (legacy.instance_id, InstanceStatus.DONE)
    assert admission.peak_reserved_bytes == cost
