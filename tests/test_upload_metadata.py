"""`--metadata-url`: a sample's metadata fetched from a stand-in lab system with the uploader's retries (500s and
answers slower than the client's timeout are retried; a service that stays down is ServiceUnreachable), and the
templates it fills."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from common.cli.main import _Parser
from common.uploader.metadata import MetadataError, MetadataSettings, fetch_metadata, fill_url, template_values
from common.uploader.retrying import RetryPolicy, ServiceUnreachable
from common.uploader.tags.options import add_tag_options, build_rewriter, plan_from_args
from common.uploader.tags.rules import TagRuleError
from tests.third_party_standins import StandIn, serve

FAST = RetryPolicy(max_retries=3, first_delay=0.01, max_delay=0.05)
KEY = MetadataSettings(api_key=SecretStr("lab-key-1"))
SAMPLE = {"patient_name": "Doe^Jane", "accession": "ACC-77", "volume": 2.5, "fasting": True, "tubes": [1, 2]}

Server = Callable[..., Awaitable[TestServer]]


@pytest.fixture(name="session")
async def session_fixture() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
        yield session


async def test_500s_and_a_timeout_are_retried_until_the_metadata_arrives(
    aiohttp_server: Server, session: aiohttp.ClientSession
) -> None:
    lab = await serve(StandIn(script=["500", "slow", "429"], body=SAMPLE), aiohttp_server)
    url = fill_url(lab.url + "/samples/{sample_id}?attempt={attempt}", {"sample_id": "S 42/a", "attempt": "2"})

    metadata = await fetch_metadata(session, url, policy=FAST, settings=KEY)

    assert metadata == SAMPLE
    assert len(lab.received) == 4
    assert {r.path for r in lab.received} == {"/samples/S%2042%2Fa?attempt=2"}
    assert {r.headers["Authorization"] for r in lab.received} == {"Bearer lab-key-1"}


async def test_a_service_that_stays_down_is_unreachable(aiohttp_server: Server, session: aiohttp.ClientSession) -> None:
    lab = await serve(StandIn(script=["500", "503", "slow", "500"]), aiohttp_server)
    with pytest.raises(ServiceUnreachable, match="metadata service") as info:
        await fetch_metadata(session, lab.url + "/samples/1", policy=FAST, settings=KEY)
    assert info.value.reason == "HTTP 500" and len(lab.received) == FAST.max_retries + 1
    with pytest.raises(ServiceUnreachable, match="metadata service"):  # nothing listens on port 9 here
        await fetch_metadata(session, "http://127.0.0.1:9/samples/1", policy=FAST, settings=KEY)


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, b"<html>login</html>", "not JSON"),
        (200, [1, 2], "not an object"),
        (404, {"detail": "no such sample"}, "answered 404"),
        (401, {"detail": "bad key"}, "answered 401"),
    ],
)
async def test_an_answer_that_is_not_a_samples_metadata_is_an_error_without_retries(
    aiohttp_server: Server, session: aiohttp.ClientSession, status: int, body: object, reason: str
) -> None:
    lab = await serve(StandIn(status=status, body=body), aiohttp_server)
    with pytest.raises(MetadataError, match=reason):
        await fetch_metadata(session, lab.url + "/s", policy=FAST, settings=KEY)
    assert len(lab.received) == 1


async def test_the_key_can_go_in_a_header_of_the_services_choice(
    aiohttp_server: Server, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DICOMFLOW_METADATA_API_KEY", "from-env")
    lab = await serve(StandIn(body=SAMPLE), aiohttp_server)
    await fetch_metadata(session, lab.url + "/s", policy=FAST, settings=MetadataSettings(), header="X-API-Key")
    assert lab.received[0].headers["X-API-Key"] == "from-env" and "Authorization" not in lab.received[0].headers


def test_template_values_are_the_scalar_fields() -> None:
    assert template_values(SAMPLE) == {
        "patient_name": "Doe^Jane",
        "accession": "ACC-77",
        "volume": "2.5",
        "fasting": "true",
    }


async def test_the_mapping_is_filled_from_the_fetched_metadata_and_checked_against_it(
    aiohttp_server: Server, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mapping = tmp_path / "mapping.txt"
    mapping.write_text("PatientID = {sample_id}-{attempt}\nPatientName = {patient_name}\nAccessionNumber={accession}\n")
    lab = await serve(StandIn(body={**SAMPLE, "sample_id": "ignored", "StudyDate": "bad"}), aiohttp_server)
    parser = _Parser(prog="upload")
    add_tag_options(parser)
    words = [
        "--mapping",
        str(mapping),
        "--sample-id",
        "S-9",
        "--attempt",
        "3",
        "--metadata-url",
        lab.url + "/{sample_id}",
    ]
    options = plan_from_args(parser.parse_args(words), parser)
    assert options is not None

    rewriter = await build_rewriter(options, session, FAST, settings=KEY)

    assert lab.received[0].path == "/S-9"
    rendered = {rule.keyword: rule.template.render(rewriter.values) for rule in rewriter.rules}
    assert rendered == {"PatientID": "S-9-3", "PatientName": "Doe^Jane", "AccessionNumber": "ACC-77"}

    mapping.write_text("StudyDate = {StudyDate}\n")  # the metadata's StudyDate shadows the file's, and is no DA
    options = plan_from_args(parser.parse_args(words), parser)
    assert options is not None
    with pytest.raises(TagRuleError, match="not a valid DA"):
        await build_rewriter(options, session, FAST, settings=KEY)
