"""Tags from metadata against the real stack: copies rewritten from a stand-in lab system's metadata and a mapping
file, streamed through the gateway to ingest, stored; the stored copies read back carry the new tags and the
originals' exact pixel data, and the originals are unchanged byte for byte."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pydicom
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from common.cli.main import _Parser
from common.uploader.metadata import MetadataSettings
from common.uploader.retrying import RetryPolicy
from common.uploader.tags.options import add_tag_options, build_rewriter, plan_from_args
from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_instances, write_files
from tests.ingest_rig import IngestRig, gateway_with_user, rig_fixture  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    results_settings_fixture,
)
from tests.third_party_standins import StandIn, serve

FAST = RetryPolicy(max_retries=3, first_delay=0.01, max_delay=0.05)
METADATA = {"patient_name": "Doe^Jane", "accession": "ACC-2026-17", "assay": "CBC"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_rewritten_copies_are_stored_with_the_metadata_tags_and_the_originals_pixels(
    rig: IngestRig, aiohttp_client: Any, aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path
) -> None:
    gateway = await gateway_with_user(rig, aiohttp_client)
    originals = write_files(
        [*iter_instances(SAMPLE_01, 2, prefix="mr"), *iter_instances(SAMPLE_02, 1, prefix="xa")], tmp_path / "in"
    )
    before = {path: digest(path) for path in originals}
    lab = await serve(StandIn(script=["500", "slow"], body=METADATA), aiohttp_server)
    mapping = tmp_path / "mapping.txt"
    mapping.write_text(
        "# the lab's mapping\nPatientID = {sample_id}-{attempt}\nPatientName = {patient_name}\n"
        "AccessionNumber = {accession}\nStudyDescription = {assay} ({StudyDate})\n"
    )
    parser = _Parser(prog="upload")
    add_tag_options(parser)
    words = ["--mapping", str(mapping), "--set-tag", "InstitutionName=Lab {sample_id}", "--sample-id", "S-0042"]
    words += ["--attempt", "2", "--metadata-url", lab.url + "/samples/{sample_id}"]
    options = plan_from_args(parser.parse_args(words), parser)
    assert options is not None

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
        rewriter = await build_rewriter(options, session, FAST, settings=MetadataSettings(api_key=SecretStr("k")))
    assert len(lab.received) == 3  # a 500 and a timeout were retried

    for path in originals:
        copy = await rewriter.prepare(path)
        sent_digest = await copy.sha256()
        answer = await gateway.post(
            "/api/uploads",
            data=copy.chunks(),
            headers={**gateway.headers, "Content-Type": "application/dicom"},
        )
        assert answer.status == 202, await answer.text()
        receipt = await answer.json()
        assert [(f["status"], f["sha256"]) for f in receipt["files"]] == [("accepted", sent_digest)]
        upload = await (await gateway.get(f"/api/uploads/{receipt['upload_id']}", headers=gateway.headers)).json()
        instance_id = upload["files"][0]["instance_id"]

        stored_answer = await gateway.get(f"/api/instances/{instance_id}/file", headers=gateway.headers)
        assert stored_answer.status == 200
        stored = await stored_answer.read()
        assert hashlib.sha256(stored).hexdigest() == sent_digest and len(stored) == copy.size
        written, original = pydicom.dcmread(io.BytesIO(stored)), pydicom.dcmread(path)
        assert written.PatientID == "S-0042-2"
        assert str(written.PatientName) == "Doe^Jane"
        assert written.AccessionNumber == "ACC-2026-17"
        assert written.StudyDescription == f"CBC ({original.StudyDate})"
        assert written.InstitutionName == "Lab S-0042"
        assert written.SOPInstanceUID == original.SOPInstanceUID
        assert written.PixelData == original.PixelData
        assert stored[copy.header_size :] == path.read_bytes()[copy.rest_offset :]

    assert {path: digest(path) for path in originals} == before
