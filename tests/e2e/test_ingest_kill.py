"""ingest killed with SIGKILL at the worst moments: no instance stays `received` past the reconcile bound.

results_service owns every instance's state and ingest keeps none, so whatever ingest had in hand
when it died, each instance whose registration committed ends `queued` and then processed: by the
broker's copy of its job if the job reached the broker, by the reconciler's republish if not.

The worst moments are reached without hooks in the product: ingest talks to RabbitMQ through a
proxy of the test's (`freezable_proxy`) that holds back one direction, so (a) the registration
commits but the job never reaches the broker, or (b) the job reaches the broker but its confirm
never reaches ingest and the upload is never answered. Each system runs on a database of its own
(the reconciler of a short bound must not touch the instances the run's other tests left behind).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from results_service.db import apply_migrations, drop_database
from samples.make_instances import SAMPLE_01, iter_instances
from single_host.processes import RunningSystem
from tests.e2e.freezable_proxy import Direction, FreezableProxy
from tests.pipeline_helpers import fetch
from tests.service_auth import as_user

RECONCILE = {"RECONCILE_AFTER_SECONDS": "2", "RECONCILE_INTERVAL_SECONDS": "0.2", "RESULTS_TIMEOUT": "120"}
SETTLE_TIMEOUT = 120.0  # a deadline for conditions polled in the database, never a wait in itself
INGEST = "ingest_service"


@pytest.fixture
async def own_database(database_url: str) -> AsyncIterator[str]:
    """A migrated database for this test's system alone, dropped after it (after the system stopped)."""
    url = f"{database_url.rsplit('/', 1)[0]}/dicomflow_kill_{uuid.uuid4().hex[:10]}"
    await apply_migrations(url)
    yield url
    await drop_database(url)


@pytest.fixture
async def broker_proxy() -> AsyncIterator[FreezableProxy]:
    proxy = FreezableProxy("127.0.0.1", 5672)
    await proxy.start()
    yield proxy
    await proxy.close()


async def start(start_system: Callable[..., RunningSystem], database: str) -> RunningSystem:
    return await asyncio.to_thread(start_system, DATABASE_URL=database, **RECONCILE)


async def restart_ingest(system: RunningSystem, amqp_url: str | None = None) -> None:
    """(Re)start ingest alone, speaking AMQP to `amqp_url` (the proxy) when given; the others keep theirs."""
    await asyncio.to_thread(system.stop, INGEST)
    shared = system.env
    if amqp_url is not None:
        system.env = {**shared, "AMQP_URL": amqp_url}
    try:
        await asyncio.to_thread(system.start, INGEST)
    finally:
        system.env = shared


async def kill_ingest(system: RunningSystem) -> None:
    await asyncio.to_thread(system.kill, INGEST)


async def upload(system: RunningSystem, owner: str, data: bytes) -> tuple[int, Any]:
    """POST one file to ingest as the gateway would, for `owner`."""
    headers = {"Content-Type": "application/dicom", **as_user(owner, audience=INGEST)}
    url = f"{system.ingest_url}/upload"
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SETTLE_TIMEOUT)) as session,
        session.post(url, data=data, headers=headers) as response,
    ):
        return response.status, await response.json()


async def statuses(database: str, owner: str) -> dict[str, str]:
    """What results_service recorded: every instance of `owner` and its status."""
    rows = await fetch(database, "SELECT id, status FROM instances WHERE owner = $1", owner)
    return {row["id"]: row["status"] for row in rows}


async def result_count(database: str, owner: str) -> int:
    query = "SELECT count(*) FROM results JOIN instances ON instances.id = results.instance_id WHERE owner = $1"
    return int((await fetch(database, query, owner))[0][0])


async def until(check: Callable[[], Any], what: str) -> Any:
    """Poll `check()` (async, returning a truthy value when met) until met; fail with `what` at the deadline."""
    deadline = asyncio.get_running_loop().time() + SETTLE_TIMEOUT
    while not (value := await check()):
        assert asyncio.get_running_loop().time() < deadline, f"not met in {SETTLE_TIMEOUT} s: {what}"
        await asyncio.sleep(0.05)
    return value


def republished(system: RunningSystem) -> list[str]:
    """The instance ids results_service's log says it republished a job for."""
    ids = []
    for line in system.log_text("results_service").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if record.get("event") == "job_republished":
                ids.append(record["instance_id"])
    return ids


async def all_processed(database: str, owner: str, expected: int) -> dict[str, str]:
    """Wait until the owner's `expected` instances are all final; return their statuses."""

    async def final() -> dict[str, str] | None:
        found = await statuses(database, owner)
        done = len(found) == expected and all(status in ("done", "failed") for status in found.values())
        return found if done else None

    found: dict[str, str] = await until(final, f"{expected} instances of {owner} processed")
    return found


@pytest.mark.parametrize("frozen", [Direction.UP, Direction.DOWN], ids=["job_never_reached_broker", "confirm_lost"])
async def test_ingest_killed_between_registration_and_confirm_leaves_no_instance_received(
    own_database: str,
    broker_proxy: FreezableProxy,
    start_system: Callable[..., RunningSystem],
    frozen: Direction,
) -> None:
    system = await start(start_system, own_database)
    await restart_ingest(system, broker_proxy.url())
    owner = f"kill-{uuid.uuid4().hex[:8]}"
    [(_, data)] = list(iter_instances(SAMPLE_01, 1))
    broker_proxy.freeze(frozen)
    answer = asyncio.create_task(upload(system, owner, data))

    async def moment() -> str | None:
        """(a) the registration committed and the job's publish is held back; (b) the job reached the broker
        (results_service consumed its copy) and the confirm is held back."""
        if broker_proxy.held[frozen] == 0:
            return None
        found = await statuses(own_database, owner)
        wanted = {"received"} if frozen is Direction.UP else {"queued", "processing", "done"}
        return next((i for i, status in found.items() if status in wanted), None)

    instance_id: str = await until(moment, "the moment to kill ingest")
    assert not answer.done()  # no 202: ingest still waits for the confirm
    await kill_ingest(system)
    with pytest.raises(aiohttp.ClientError):
        await answer

    assert await all_processed(own_database, owner, 1) == {instance_id: "done"}
    assert await result_count(own_database, owner) == 1
    if frozen is Direction.UP:  # only the reconciler could have published it
        assert republished(system).count(instance_id) >= 1


async def test_ingest_killed_twice_during_a_stream_of_uploads_leaves_no_instance_received(
    own_database: str, start_system: Callable[..., RunningSystem]
) -> None:
    """50 files, 3 clients, ingest SIGKILLed twice mid-stream and restarted; each client resends a file
    whose upload was cut off until it is answered (`accepted`, or `duplicate` if the cut-off one registered)."""
    system = await start(start_system, own_database)
    owner = f"stream-{uuid.uuid4().hex[:8]}"
    files = [data for _, data in iter_instances(SAMPLE_01, 50)]
    answered: list[str] = []
    restarted = asyncio.Event()
    restarted.set()

    async def client(mine: list[bytes]) -> None:
        for data in mine:
            while True:
                await restarted.wait()
                try:
                    status, body = await upload(system, owner, data)
                except aiohttp.ClientError:  # cut off by the kill: resend once ingest is back
                    await asyncio.sleep(0.05)  # (the killer marks it down right after the kill)
                    continue
                if status == 503:  # a dependency did not answer in time: resend, as a client is told to
                    continue
                assert status == 202, body
                answered.append(body["files"][0]["status"])
                break

    async def killer() -> None:
        for after in (15, 35):

            async def reached(count: int = after) -> bool:
                return len(answered) >= count

            await until(reached, f"{after} files answered")
            restarted.clear()
            await kill_ingest(system)
            await restart_ingest(system)
            restarted.set()

    clients = [asyncio.create_task(client(files[i::3])) for i in range(3)]
    await asyncio.gather(killer(), *clients)

    assert len(answered) == 50 and set(answered) <= {"accepted", "duplicate"}
    found = await all_processed(own_database, owner, 50)
    assert list(found.values()).count("done") == 50
    assert await result_count(own_database, owner) == 50
