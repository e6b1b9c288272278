"""`Uploader` with the tag rewriter against the real stack: a folder of generated instances and a text file sent
with tags from a stand-in lab system's metadata; the stored copies carry the tags and the originals' pixels, the
originals are unchanged, the text file is refused on the client, and a second run sends nothing (the rewritten
copies are the same bytes, so the resume lookup finds them)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pydicom
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from common.cli.main import _Parser
from common.uploader.metadata import MetadataSettings
from common.uploader.retrying import RetryPolicy
from common.uploader.tags.options import add_tag_options, build_rewriter, plan_from_args
from common.uploader.uploader import Uploader
from samples.make_instances import SAMPLE_01, iter_instances, write_files
from tests.ingest_rig import IngestRig, gateway_with_user, rig_fixture  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    results_settings_fixture,
)
from tests.third_party_standins import StandIn, serve

FAST = RetryPolicy(max_retries=3, first_delay=0.01, max_delay=0.05)


def digests(folder: Path) -> dict[Path, str]:
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


async def test_uploader_sends_rewritten_copies_once_and_leaves_the_originals(
    rig: IngestRig, aiohttp_client: Any, aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path
) -> None:
    gateway = await gateway_with_user(rig, aiohttp_client)
    folder = tmp_path / "sample"
    write_files(iter_instances(SAMPLE_01, 3, prefix="mr"), folder)
    (folder / "notes.txt").write_text("not an image")
    before = digests(folder)
    lab = await serve(StandIn(script=["503"], body={"accession": "ACC-9"}), aiohttp_server)
    parser = _Parser(prog="upload")
    add_tag_options(parser)
    words = ["--set-tag", "PatientID={sample_id}-{attempt}", "--set-tag", "AccessionNumber={accession}"]
    options = plan_from_args(parser.parse_args([*words, "--sample-id", "S-7", "--metadata-url", lab.url]), parser)
    assert options is not None
    server = str(gateway.make_url("")).rstrip("/")
    token = gateway.headers["Authorization"].removeprefix("Bearer ")

    async def run() -> Any:
        async with Uploader(server, token=token, policy=FAST) as up:
            rewriter = await build_rewriter(
                options, up.client.session, FAST, settings=MetadataSettings(api_key=SecretStr("k"))
            )
            up.prepare = rewriter.prepare
            return await up.upload([folder])

    first = await run()
    outcomes = {Path(f.path).name: (f.outcome, f.instance_id is not None) for f in first.files}
    assert outcomes == {
        "mr-00000.dcm": ("accepted", True),
        "mr-00001.dcm": ("accepted", True),
        "mr-00002.dcm": ("accepted", True),
        "notes.txt": ("rejected", False),
    }
    for report in first.files:
        if report.instance_id is None:
            continue
        answer = await gateway.get(f"/api/instances/{report.instance_id}/file", headers=gateway.headers)
        stored = await answer.read()
        assert hashlib.sha256(stored).hexdigest() == report.sha256
        written, original = pydicom.dcmread(io.BytesIO(stored)), pydicom.dcmread(report.path)
        assert (written.PatientID, written.AccessionNumber) == ("S-7-1", "ACC-9")
        assert written.PixelData == original.PixelData

    second = await run()
    assert sorted(f.outcome for f in second.files) == ["rejected", "skipped", "skipped", "skipped"]
    assert digests(folder) == before
    assert len(lab.received) == 3  # a 503 retried, then once more for the second run
