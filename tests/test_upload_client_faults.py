"""The uploader on a flaky network: a proxy in front of the real gateway drops connections (before and after the
server took the file) and answers 503 and 429 with Retry-After and 400. Every file ends on the server exactly
once, Retry-After holds a retry back at least that long, and a 4xx is never retried."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from common.uploader import Outcome, RetryPolicy, Uploader
from samples.make_instances import SAMPLE_01, iter_instances, write_files
from tests.ingest_rig import IngestRig, rig_fixture  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import channel_fixture, owner_fixture, results_settings_fixture  # noqa: F401
from tests.test_upload_client import server_of
from tests.upload_fault_proxy import FaultProxy

FAST = RetryPolicy(max_retries=4, first_delay=0.05, max_delay=0.2)


async def test_faults_are_retried_until_every_file_is_on_the_server_exactly_once(
    rig: IngestRig, aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "flaky"
    paths = write_files(iter_instances(SAMPLE_01, 7), folder)
    names = [f"flaky/{p.name}" for p in paths]
    upstream, token = await server_of(rig, aiohttp_client)
    proxy = FaultProxy(
        upstream,
        plan={
            names[0]: ["drop-before", "drop-before"],
            names[1]: ["drop-after"],  # the server took it; the retry is answered `duplicate`
            names[2]: [(503, 1)],
            names[3]: [(429, 1), (503, None)],
            names[4]: [(400, None)],
        },
    )
    server = await aiohttp_server(proxy.app())
    async with Uploader(str(server.make_url("")).rstrip("/"), token=token, concurrency=4, policy=FAST) as up:
        summary = await up.upload([folder])

    outcomes = {f.name: f.outcome for f in summary.files}
    assert outcomes == {
        names[0]: Outcome.ACCEPTED,
        names[1]: Outcome.DUPLICATE,
        names[2]: Outcome.ACCEPTED,
        names[3]: Outcome.ACCEPTED,
        names[4]: Outcome.REJECTED,
        names[5]: Outcome.ACCEPTED,
        names[6]: Outcome.ACCEPTED,
    }
    assert summary.exit_status == 1 and summary.retries == 6
    # Server side: one instance per file that got through, none twice, none for the file the proxy refused.
    shas = {f.name: f.sha256 for f in summary.files}
    rows = await rig.rows("SELECT sha256 FROM instances WHERE sha256 = ANY($1)", list(shas.values()))
    assert sorted(r["sha256"] for r in rows) == sorted(shas[n] for n in names if n != names[4])
    assert [len(proxy.seen[n]) for n in names] == [3, 2, 2, 3, 1, 1, 1]
    # Retry-After: 1 held each retry back at least a second after the fault's answer.
    for name, fault in ((names[2], 0), (names[3], 0)):
        assert proxy.seen[name][fault + 1] - proxy.answered[name][fault] >= 1.0
    assert hashlib.sha256(paths[4].read_bytes()).hexdigest() == shas[names[4]]


async def test_a_server_that_never_recovers_is_unreachable_with_what_got_through_kept(
    rig: IngestRig, aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "down"
    paths = write_files(iter_instances(SAMPLE_01, 2), folder)
    upstream, token = await server_of(rig, aiohttp_client)
    always = [(503, None)] * 10
    proxy = FaultProxy(upstream, plan={f"down/{paths[1].name}": always})
    server = await aiohttp_server(proxy.app())
    async with Uploader(str(server.make_url("")).rstrip("/"), token=token, concurrency=1, policy=FAST) as up:
        summary = await up.upload([folder])
    assert summary.exit_status == 3 and "HTTP 503" in (summary.unreachable or "")
    assert [f.outcome for f in summary.files] == [Outcome.ACCEPTED, Outcome.NOT_SENT]
    assert len(proxy.seen[f"down/{paths[1].name}"]) == FAST.max_retries + 1
