"""`dicomflow upload`'s client core against the real stack: the gateway, ingest and results_service apps on
this run's database, broker and blob folder. A folder of generated instances and bad files, resume, --atomic,
--wait, and the originals left as they were."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from common.uploader import Outcome, RetryPolicy, Uploader, UploadSummary
from samples.make_instances import SAMPLE_01, SAMPLE_02, iter_instances, write_files
from tests.ingest_rig import IngestRig, gateway_with_user, rig_fixture  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import channel_fixture, owner_fixture, results_settings_fixture  # noqa: F401

FAST = RetryPolicy(max_retries=3, first_delay=0.05, max_delay=0.2)


def digests(folder: Path) -> dict[str, str]:
    """Every file under `folder` by relative path: its SHA-256 (to prove the originals unchanged)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def make_folder(root: Path, good: int = 6) -> tuple[Path, list[bytes]]:
    """`scan/`: generated instances in two series folders, a text file and a truncated instance."""
    folder = root / "scan"
    first = list(iter_instances(SAMPLE_01, good - 2))
    second = list(iter_instances(SAMPLE_02, 2))
    write_files(first, folder / "series1")
    write_files(second, folder / "series2")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "series2" / "cut.dcm").write_bytes(second[0][1][: len(second[0][1]) // 2])
    return folder, [data for _, data in first + second]


async def server_of(rig: IngestRig, aiohttp_client: Any) -> tuple[str, str]:
    """A gateway with a new user: its URL and the user's token."""
    client = await gateway_with_user(rig, aiohttp_client)
    return str(client.make_url("")).rstrip("/"), client.headers["Authorization"].removeprefix("Bearer ")


async def owner_instances(rig: IngestRig, summary: UploadSummary) -> list[Any]:
    """The instances of the uploader of `summary`'s uploads (found through one of its upload rows)."""
    [upload] = await rig.rows("SELECT owner FROM uploads WHERE id = $1", summary.upload_ids[0])
    return await rig.rows("SELECT id, sha256, status FROM instances WHERE owner = $1", upload["owner"])


async def test_a_folder_with_bad_files_is_sent_file_by_file_and_a_rerun_sends_only_the_rest(
    rig: IngestRig, aiohttp_client: Any, tmp_path: Path
) -> None:
    folder, good = make_folder(tmp_path)
    before = digests(folder)
    server, token = await server_of(rig, aiohttp_client)
    async with Uploader(server, token=token, concurrency=4, policy=FAST) as up:
        first = await up.upload([folder])
    assert first.counts == {"accepted": 6, "rejected": 2} and first.exit_status == 1
    rejected = {f.name: f.reason for f in first.files if f.outcome is Outcome.REJECTED}
    assert set(rejected) == {"scan/notes.txt", "scan/series2/cut.dcm"}
    assert "DICM" in (rejected["scan/notes.txt"] or "")
    assert len(first.upload_ids) == 8  # one request, one upload per file
    instances = await owner_instances(rig, first)
    assert sorted(i["sha256"] for i in instances) == sorted(hashlib.sha256(d).hexdigest() for d in good)

    async with Uploader(server, token=token, concurrency=4, policy=FAST) as up:
        again = await up.upload([folder])
    assert again.counts == {"rejected": 2, "skipped": 6}
    assert len(again.upload_ids) == 2  # only the two bad files were sent again
    assert len(await owner_instances(rig, again)) == 6
    assert digests(folder) == before


async def test_atomic_with_one_bad_file_registers_nothing_and_lists_every_reason(
    rig: IngestRig, aiohttp_client: Any, tmp_path: Path
) -> None:
    folder, _ = make_folder(tmp_path, good=4)
    before = digests(folder)
    server, token = await server_of(rig, aiohttp_client)
    async with Uploader(server, token=token, policy=FAST) as up:
        summary = await up.upload([folder], atomic=True)
    assert summary.exit_status == 1
    assert summary.counts == {"not_sent": 4, "rejected": 2}
    assert all(f.reason for f in summary.files)
    [upload_id] = {f.upload_id for f in summary.files} | set(summary.upload_ids) or {None}
    assert upload_id is None  # a 422 registers no upload the client could follow
    assert await rig.rows("SELECT id FROM instances WHERE sha256 = ANY($1)", [f.sha256 for f in summary.files]) == []
    assert digests(folder) == before


async def test_atomic_with_good_files_registers_all_in_one_upload(
    rig: IngestRig, aiohttp_client: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "good"
    write_files(iter_instances(SAMPLE_01, 5), folder)
    server, token = await server_of(rig, aiohttp_client)
    async with Uploader(server, token=token, policy=FAST) as up:
        summary = await up.upload([folder], atomic=True)
    assert summary.counts == {"accepted": 5} and summary.exit_status == 0
    assert len(summary.upload_ids) == 1
    files = await rig.files_of(summary.upload_ids[0])
    assert [f["sha256"] for f in files] == [f.sha256 for f in summary.files]
    assert len(await owner_instances(rig, summary)) == 5


async def test_wait_follows_every_instance_to_its_final_status(
    rig: IngestRig, aiohttp_client: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "few"
    written = write_files(iter_instances(SAMPLE_01, 3), folder)
    server, token = await server_of(rig, aiohttp_client)
    failed_sha = hashlib.sha256(written[1].read_bytes()).hexdigest()

    async def process_them() -> None:  # no processor runs here: play its part on the rows
        while len(rows := await rig.rows("SELECT id, sha256 FROM instances WHERE sha256 = ANY($1)", shas)) < 3:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        for row in rows:
            status = "failed" if row["sha256"] == failed_sha else "done"
            await rig.rows("UPDATE instances SET status = $1 WHERE id = $2", status, row["id"])

    shas = [hashlib.sha256(p.read_bytes()).hexdigest() for p in written]
    async with Uploader(server, token=token, policy=FAST) as up:
        summary, _ = await asyncio.gather(up.upload([folder], wait=True, wait_timeout=30), process_them())
    assert summary.statuses == {"done": 2, "failed": 1}
    assert {f.sha256: f.status for f in summary.files}[failed_sha] == "failed"
    assert summary.exit_status == 1


async def test_a_refused_token_stops_the_run_with_exit_1(rig: IngestRig, aiohttp_client: Any, tmp_path: Path) -> None:
    folder = tmp_path / "one"
    write_files(iter_instances(SAMPLE_01, 1), folder)
    server, _ = await server_of(rig, aiohttp_client)
    async with Uploader(server, token="not-a-token", policy=FAST) as up:
        summary = await up.upload([folder])
    assert summary.exit_status == 1 and "refused the token" in (summary.error or "")
