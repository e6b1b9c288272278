"""`dicomflow jobs parked` lists the parked messages without losing them; `jobs replay` sends them back."""

from __future__ import annotations

import asyncio
import json

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage

from common.app.settings import BaseServiceSettings
from common.cli.cmd_jobs import list_parked
from common.cli.main import main
from common.messaging.broker import JOB_LARGE, JOB_STANDARD, declare_topology, delete_topology, open_channel, publish
from common.messaging.messages import ProcessJob
from tests.pipeline_helpers import eventually
from tests.queue_helpers import take


def make_job(instance_id: str) -> ProcessJob:
    return ProcessJob(
        instance_id=instance_id,
        upload_id="u-1",
        owner="local",
        sha256="b" * 64,
        size=1,
        sop_class_uid="1.2.840.10008.5.1.4.1.1.7",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )


async def _park(settings: BaseServiceSettings, jobs: list[tuple[ProcessJob, str]]) -> None:
    """Publish the jobs and reject each from its queue: the broker dead-letters them to `parked`."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await open_channel(connection)
        topology = await declare_topology(channel, settings)
        for job, key in jobs:
            await publish(topology.exchange, job, key)
            queue = topology.jobs if key == JOB_STANDARD else topology.jobs_large
            message = await queue.get(timeout=5)
            assert message is not None
            await message.reject(requeue=False)

    async def all_parked() -> bool:  # dead-lettering from a quorum queue is asynchronous
        return len(await list_parked(settings)) == len(jobs)

    await eventually(all_parked)


async def _take(settings: BaseServiceSettings, queue_name: str, expected: int) -> list[AbstractIncomingMessage]:
    """The `expected` messages of the queue (acked), and proof that no more are there."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        return await take(await (await connection.channel()).get_queue(queue_name), expected)


async def _delete(settings: BaseServiceSettings) -> None:
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        await delete_topology(await connection.channel(), settings.amqp_prefix)


@pytest.fixture
def settings(amqp_prefix: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AMQP_PREFIX", amqp_prefix)
    settings = BaseServiceSettings()
    yield settings
    asyncio.run(_delete(settings))


def parked_json(capsys: pytest.CaptureFixture[str]) -> list[dict]:
    assert main(["jobs", "parked", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_listing_keeps_the_messages_and_replay_sends_them_back(settings, capsys) -> None:
    jobs = [(make_job("i-1"), JOB_STANDARD), (make_job("i-2"), JOB_LARGE), (make_job("i-3"), JOB_STANDARD)]
    asyncio.run(_park(settings, jobs))
    listed = parked_json(capsys)
    assert [(m["message_id"], m["routing_key"], m["reason"], m["instance_id"]) for m in listed] == [
        (job.message_id, key, "rejected", job.instance_id) for job, key in jobs
    ]
    assert listed[0]["queue"] == settings.amqp_prefix + ".jobs"
    assert parked_json(capsys) == listed  # looking lost nothing and kept the order

    assert main(["jobs", "replay", jobs[1][0].message_id]) == 0
    assert "i-2" in capsys.readouterr().out
    [large] = asyncio.run(_take(settings, settings.amqp_prefix + ".jobs.large", 1))
    assert ProcessJob.model_validate_json(large.body) == jobs[1][0]
    assert "x-death" not in (large.headers or {})
    assert [m["message_id"] for m in parked_json(capsys)] == [jobs[0][0].message_id, jobs[2][0].message_id]

    assert main(["jobs", "replay", "--all", "--json"]) == 0
    assert [m["instance_id"] for m in json.loads(capsys.readouterr().out)] == ["i-1", "i-3"]
    replayed = asyncio.run(_take(settings, settings.amqp_prefix + ".jobs", 2))
    assert [ProcessJob.model_validate_json(m.body).instance_id for m in replayed] == ["i-1", "i-3"]
    assert parked_json(capsys) == []


def test_replaying_an_unknown_id_fails_and_loses_nothing(settings, capsys) -> None:
    job = make_job("i-9")
    asyncio.run(_park(settings, [(job, JOB_STANDARD)]))
    capsys.readouterr()
    assert main(["jobs", "replay", "no-such-id"]) == 1
    capsys.readouterr()
    assert [m["message_id"] for m in parked_json(capsys)] == [job.message_id]


def test_missing_topology_is_a_clear_error(amqp_prefix: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("AMQP_PREFIX", amqp_prefix)
    assert main(["jobs", "parked"]) == 1
    assert "check AMQP_PREFIX" in capsys.readouterr().err
