"""The Orthanc baseline of the pipeline benchmark: its configuration stays in the benchmark's folder and on
127.0.0.1 with fsync on, and a missing Orthanc stops the benchmark with how to install it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.orthanc_baseline import render_config, require_orthanc


def test_config_is_json_with_storage_and_index_under_the_given_folder(tmp_path: Path) -> None:
    config = json.loads(render_config(tmp_path, 18042))

    assert Path(config["StorageDirectory"]).parent == tmp_path
    assert Path(config["IndexDirectory"]).parent == tmp_path
    assert config["StorageDirectory"] != config["IndexDirectory"]
    assert config["HttpPort"] == 18042


def test_config_keeps_orthanc_local_and_fsyncing(tmp_path: Path) -> None:
    config = json.loads(render_config(tmp_path, 18042))

    assert config["RemoteAccessAllowed"] is False
    assert config["DicomServerEnabled"] is False
    assert config["SyncStorageArea"] is True
    assert config["StorageCompression"] is False


def test_missing_orthanc_exits_with_how_to_install_it(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        require_orthanc(tmp_path / "Orthanc")

    assert "apt-get install -y orthanc" in str(exited.value.code)
