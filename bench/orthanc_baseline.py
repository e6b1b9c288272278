"""The accept-rate baseline: Orthanc, a mature C++ DICOM server, fed the same files by the same load generator.

The issue's 300 instances/s was Orthanc's rate on the machine it was set on; this machine's speed
moves between sessions, so the benchmark measures Orthanc in the same run and reports our rate as a
ratio to it. Orthanc runs as a child process on a free 127.0.0.1 port with a generated configuration
whose storage area and SQLite index live in the benchmark's temporary folder, and receives each file
as `POST /instances` (its REST upload: parse, store, index, answer).

Durability, made comparable where Orthanc allows: `SyncStorageArea` is set explicitly, so Orthanc
fdatasyncs every stored file before it answers, as our ingest fsyncs every blob. Its index is SQLite
(WAL) and, as observed with strace on 1.10.1, is fdatasynced by a background flush about every 10 s,
not per instance; ours is a PostgreSQL commit (synchronous_commit on) and a confirmed persistent
publish to a quorum queue before every answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from bench.load_generator import UploadTarget, cpu_of, timed_upload
from single_host.processes import ChildProcess

DEFAULT_BINARY = "/usr/sbin/Orthanc"
INSTALL_HINT = (
    "the accept-rate benchmark measures Orthanc (Debian package 'orthanc') in the same run as its baseline: "
    "install it with 'sudo apt-get install -y orthanc' (make bench does this when run as root), "
    "or set ORTHANC to the path of an Orthanc binary"
)
STOP_TIMEOUT = 15.0
CPU_PARTS = ("Orthanc", "load generator")
# Orthanc's answer to a file it stores, and to the same SOP Instance sent again (OverwriteInstances false).
ROUND_STATUS = {1: "Success", 2: "AlreadyStored"}


def orthanc_binary() -> Path:
    """The Orthanc binary to run: $ORTHANC (the Makefile passes its ORTHANC variable) or Debian's path."""
    return Path(os.environ.get("ORTHANC") or shutil.which("Orthanc") or DEFAULT_BINARY)


def require_orthanc(binary: Path) -> str:
    """Orthanc's version (e.g. "1.10.1"); exits with how to install it when the binary is missing or broken."""
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"Orthanc not found at {binary}: {INSTALL_HINT}.")
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise SystemExit(f"{binary} --version failed ({e}): {INSTALL_HINT}.") from e
    words = out.split("\n", 1)[0].split()  # "<argv[0]> 1.10.1"
    return words[-1] if words else "unknown version"


def orthanc_config(folder: Path, port: int) -> dict[str, Any]:
    """Orthanc's settings for the baseline: HTTP on 127.0.0.1 only, storage and index under `folder`."""
    return {
        "Name": "dicomflow-bench",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpServerEnabled": True,
        "HttpPort": port,
        "RemoteAccessAllowed": False,  # 127.0.0.1 only
        "AuthenticationEnabled": False,
        "DicomServerEnabled": False,
        "Plugins": [],
        "StorageCompression": False,
        "SyncStorageArea": True,  # fdatasync each stored file before answering (the default since 1.7.4)
        "OverwriteInstances": False,
        "SaveJobs": False,
    }


def render_config(folder: Path, port: int) -> str:
    """The configuration file's text (JSON)."""
    return json.dumps(orthanc_config(folder, port), indent=2) + "\n"


class Orthanc(ChildProcess):
    """One Orthanc process for the duration of a `with` block: configured, started, ready, then stopped."""

    def __init__(self, binary: Path, folder: Path, port: int) -> None:
        super().__init__("Orthanc", folder / "orthanc.log")
        self.binary = binary
        self.folder = folder
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Orthanc:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "orthanc.json"
        config.write_text(render_config(self.folder, self.port))
        self.start([self.binary, config])
        try:
            self.wait_ready(f"{self.url}/system")  # its database and storage are open by then
        except BaseException:
            self.stop(timeout=STOP_TIMEOUT)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop(timeout=STOP_TIMEOUT)

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by Orthanc (all its threads) and by this process, the load generator."""
        return {"Orthanc": cpu_of(psutil.Process(self.pid)), "load generator": cpu_of(psutil.Process())}

    def target(self, status: str) -> UploadTarget:
        """`POST /instances`, accepted when Orthanc answers 200 with the given `Status`."""
        return UploadTarget(
            f"{self.url}/instances", {}, lambda code, body: code == 200 and body.get("Status") == status
        )


async def orthanc_round(orthanc: Orthanc, paths: list[Path], round_no: int) -> dict[str, float]:
    """Upload every file to Orthanc: round 1 new bytes (stored), round 2 the same again (AlreadyStored)."""
    return await timed_upload(orthanc.target(ROUND_STATUS[round_no]), paths, orthanc.cpu_seconds)
