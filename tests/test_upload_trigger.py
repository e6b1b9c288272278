"""`--trigger-url`: the analysis is started at a stand-in third-party service once every instance is done, with
the uploader's retries (500s and a timeout are retried, the same Idempotency-Key each time); a service that stays
down is ServiceUnreachable; nothing is sent while an instance is not done."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from common.cli.main import _Parser
from common.uploader.retrying import RetryPolicy, ServiceUnreachable
from common.uploader.tags.options import add_tag_options
from common.uploader.trigger import (
    TriggerError,
    TriggerInstance,
    TriggerRequest,
    TriggerSettings,
    add_trigger_options,
    send_trigger,
    trigger_from_args,
)
from tests.third_party_standins import StandIn, serve

FAST = RetryPolicy(max_retries=3, first_delay=0.01, max_delay=0.05)
KEY = TriggerSettings(api_key=SecretStr("analysis-key"))
Server = Callable[..., Awaitable[TestServer]]


def request(*statuses: str) -> TriggerRequest:
    return TriggerRequest(
        upload_id="u" * 32,
        instances=[
            TriggerInstance(instance_id=f"{i:032x}", sha256=f"{i:064x}", name=f"f{i}.dcm", status=status)
            for i, status in enumerate(statuses)
        ],
        sample_id="S-1",
        attempt=2,
    )


@pytest.fixture(name="session")
async def session_fixture() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
        yield session


async def test_the_trigger_is_retried_through_500s_and_a_timeout_and_arrives_once_whole(
    aiohttp_server: Server, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOMFLOW_TRIGGER_API_KEY", "env-key")
    service = await serve(StandIn(script=["500", "slow", "502"], status=202, body={"analysis": "a-1"}), aiohttp_server)
    body = request("done", "done")

    reply = await send_trigger(session, service.url + "/analyses", body, policy=FAST, settings=TriggerSettings())

    assert reply.status == 202 and reply.json() == {"analysis": "a-1"}
    assert len(service.received) == 4
    assert all(TriggerRequest.model_validate(r.json()) == body for r in service.received)
    assert service.received[-1].json() == {
        "upload_id": "u" * 32,
        "instances": [
            {"instance_id": f"{i:032x}", "sha256": f"{i:064x}", "name": f"f{i}.dcm", "status": "done"} for i in (0, 1)
        ],
        "upload_ids": [],
        "sample_id": "S-1",
        "attempt": 2,
    }
    assert {r.headers["Authorization"] for r in service.received} == {"Bearer env-key"}
    assert len({r.headers["Idempotency-Key"] for r in service.received}) == 1


async def test_a_service_that_stays_down_is_unreachable(aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    service = await serve(StandIn(script=["500"] * 10), aiohttp_server)
    with pytest.raises(ServiceUnreachable, match="analysis service"):
        await send_trigger(session, service.url + "/a", request("done"), policy=FAST, settings=KEY)
    assert len(service.received) == FAST.max_retries + 1
    with pytest.raises(ServiceUnreachable):
        await send_trigger(session, "http://127.0.0.1:9/a", request("done"), policy=FAST, settings=KEY)


async def test_nothing_is_sent_while_an_instance_is_not_done(
    aiohttp_server: Server, session: aiohttp.ClientSession
) -> None:
    service = await serve(StandIn(), aiohttp_server)
    with pytest.raises(TriggerError, match=r"1 instance\(s\) not done: f1.dcm \(failed\)"):
        await send_trigger(session, service.url + "/a", request("done", "failed"), policy=FAST, settings=KEY)
    assert service.received == []


async def test_a_refusal_is_an_error_and_not_retried(aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    service = await serve(StandIn(status=422, body={"detail": "unknown sample"}), aiohttp_server)
    with pytest.raises(TriggerError, match="refused the trigger: 422"):
        await send_trigger(session, service.url + "/a", request("done"), policy=FAST, settings=KEY, header="X-Key")
    assert len(service.received) == 1 and service.received[0].headers["X-Key"] == "analysis-key"


def parse(*words: str) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = _Parser(prog="upload")
    parser.add_argument("--wait", action="store_true")
    add_tag_options(parser)
    add_trigger_options(parser)
    return parser.parse_args(list(words)), parser


def test_trigger_url_implies_wait_and_is_refused_when_nothing_is_sent() -> None:
    args, parser = parse("--trigger-url", "https://analysis.example/run")
    options = trigger_from_args(args, parser)
    assert options is not None and options.url == "https://analysis.example/run" and args.wait is True
    args, parser = parse()
    assert trigger_from_args(args, parser) is None and args.wait is False
    for words in (["--set-tag", "PatientID=x", "--dry-run"], ["--set-tag", "PatientID=x", "--verify-only"], []):
        args, parser = parse("--trigger-url", "https://a.example/" if words else "ftp://a.example/", *words)
        with pytest.raises(SystemExit) as info:
            trigger_from_args(args, parser)
        assert info.value.code == 2
