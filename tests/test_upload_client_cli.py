"""`dicomflow upload` as a person or a script runs it: a process, its exit status, its output. Resume after the
client is killed mid-run; usage errors (2); a server that cannot be reached (3); a failed run's log sent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from samples.make_instances import SAMPLE_01, iter_instances, write_files
from tests.ingest_rig import IngestRig, rig_fixture  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import channel_fixture, owner_fixture, results_settings_fixture  # noqa: F401
from tests.test_upload_client import server_of
from tests.upload_fault_proxy import FaultProxy

CLI = [sys.executable, "-m", "common.cli", "upload"]


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DICOMFLOW_")}
    return {**base, "LOG_FORMAT": "json", **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_cli(*args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *args],
        env=env(**extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_usage_errors_exit_2_and_a_closed_port_exits_3(tmp_path: Path) -> None:
    """Four runs at once (each start-up imports the CLI: they overlap)."""
    write_files(iter_instances(SAMPLE_01, 1), tmp_path / "one")
    folder = str(tmp_path / "one")
    closed = f"http://127.0.0.1:{free_port()}"
    runs = {
        "bad option": start_cli(folder, "--concurrency", "0", DICOMFLOW_TOKEN="t"),
        "password without a terminal": start_cli(folder, "--email", "a@example.org"),
        "no login": start_cli(folder),
        "closed port": start_cli(folder, "--server", closed, "--max-retries", "1", "--json", DICOMFLOW_TOKEN="t"),
    }
    done = {what: (run.wait(timeout=60), *run.communicate()) for what, run in runs.items()}
    assert done["bad option"][0] == 2 and "--concurrency" in done["bad option"][2]
    assert (
        done["password without a terminal"][0] == 2 and "DICOMFLOW_PASSWORD" in done["password without a terminal"][2]
    )
    assert done["no login"][0] == 2 and "DICOMFLOW_TOKEN" in done["no login"][2]
    status, out, err = done["closed port"]
    assert status == 3, err
    assert "could not be reached" in out and json.loads(out)["exit_status"] == 3


async def settled_count(rig: IngestRig, owner: str) -> int:
    """The owner's instances, once the count has not changed for half a second."""
    count = -1
    while (now := len(await rig.rows("SELECT id FROM instances WHERE owner = $1", owner))) != count:
        count = now
        await asyncio.sleep(0.5)
    return count


async def test_a_rerun_after_the_client_was_killed_sends_only_the_rest(
    rig: IngestRig, aiohttp_client: Any, aiohttp_server: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "big"
    paths = write_files(iter_instances(SAMPLE_01, 24), folder)
    upstream, token = await server_of(rig, aiohttp_client)
    proxy = FaultProxy(upstream, delay=0.15)  # slow enough to stop the client midway
    server = str((await aiohttp_server(proxy.app())).make_url("")).rstrip("/")
    args = [str(folder), "--server", server, "--concurrency", "1", "--json"]
    process = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env(DICOMFLOW_TOKEN=token), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    owner = None
    while True:  # wait for 5 files on the server, then kill the client
        rows = await rig.rows(
            "SELECT owner FROM uploads u WHERE u.created_at > now() - interval '5 minutes' AND "
            "EXISTS (SELECT 1 FROM upload_files f WHERE f.upload_id = u.id AND f.name LIKE 'big/%')"
        )
        owners = {r["owner"] for r in rows}
        if len(rows) >= 5 and len(owners) == 1:
            owner = owners.pop()
            break
        assert process.returncode is None, "the client finished before it could be killed"
        await asyncio.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    assert process.returncode == -signal.SIGKILL
    before = await settled_count(rig, owner)  # the file in flight may still get through the proxy
    assert 5 <= before < len(paths)

    proxy.delay = 0
    rerun = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env(DICOMFLOW_TOKEN=token), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await rerun.communicate()
    assert rerun.returncode == 0, err.decode()
    summary = json.loads(out)
    assert summary["counts"] == {"accepted": len(paths) - before, "skipped": before}
    instances = await rig.rows("SELECT sha256 FROM instances WHERE owner = $1", owner)
    assert len(instances) == len({r["sha256"] for r in instances}) == len(paths)
    uploads = await rig.rows("SELECT id FROM uploads WHERE owner = $1", owner)
    assert len(uploads) in (len(paths), len(paths) + 1)  # + the one in flight when killed, if it got through


async def test_a_failed_run_sends_its_log_and_prints_its_id(
    rig: IngestRig, aiohttp_client: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    write_files(iter_instances(SAMPLE_01, 2), folder)
    (folder / "notes.txt").write_text("not an image\n")
    server, token = await server_of(rig, aiohttp_client)
    args = [str(folder), "--server", server, "--send-log-on-failure", "--sample-id", "S/7", "--attempt", "2"]
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=env(DICOMFLOW_TOKEN=token),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 1, err.decode()
    text = out.decode()
    assert "rejected  mixed/notes.txt: " in text and "2 accepted, 1 rejected" in text
    log_id = text.split("client log ")[1].split()[0]
    [row] = await rig.rows("SELECT name, body FROM client_logs WHERE id = $1", log_id)
    assert row["name"] == "S_7-2.log" and (tmp_path / "S_7-2.log").exists()
    events = [json.loads(line)["event"] for line in bytes(row["body"]).decode().splitlines()]
    assert {"upload_started", "file_rejected", "upload_sent"} <= set(events)
