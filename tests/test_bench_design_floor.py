"""The design floor of the accept benchmark: ingest's file work measured for real, and the bound it gives."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.design_floor import design_floor_ms, file_work_ms
from bench.pipeline_report import PipelineFigures, design_floor_lines
from common.storage.blobs import BlobStore
from common.storage.crypto import Keyring
from common.storage.crypto_keys import generate_key_spec


def test_file_work_validates_and_stores_every_file_then_finds_them_stored(tmp_path: Path, samples_dir: Path) -> None:
    paths = [samples_dir / "sample-01-dicom.dcm", samples_dir / "sample-02-dicom.dcm"]
    keyring = Keyring.from_spec(generate_key_spec("bench"))
    figures = file_work_ms(paths, tmp_path / "blobs", keyring)
    assert set(figures) == {1, 2} and all(ms > 0 for ms in figures.values())
    store = BlobStore(tmp_path / "blobs", keyring)
    for path in paths:  # round 1 really stored each file, encrypted, under its hash
        data = path.read_bytes()
        assert store.read_bytes_sync(hashlib.sha256(data).hexdigest()) == data


def _round(load_generator: float, **cpu: float) -> dict[str, float]:
    """A round's figures as the benchmark records them: seconds taken and CPU ms per file of each part."""
    return {"accept": 2.0, "cpu:load generator": load_generator, **{f"cpu:{name}": ms for name, ms in cpu.items()}}


def test_the_floor_adds_hops_file_work_and_the_services_behind_ingest_and_bounds_the_ratio() -> None:
    ours = _round(gateway=1.3, ingest_service=3.0, results_service=0.8, rabbitmq=0.5, postgres=0.5, load_generator=0.8)
    hops = {"cpu:proxy": 0.7, "cpu:sink": 0.4}
    assert design_floor_ms(hops, 0.9, ours) == 0.7 + 0.4 + 0.9 + 0.8 + 0.5 + 0.5
    figures = PipelineFigures(n=700, megabytes=638, orthanc_version="1.10.1")
    figures.ours = {1: ours}
    figures.floor = {1: {**hops, "accept": 1.0, "cpu:load generator": 0.6}}
    figures.orthanc = {1: {"accept": 1.0, "cpu:Orthanc": 3.2, "cpu:load generator": 0.8}}
    figures.file_work = {1: 0.9}
    (line,) = design_floor_lines(figures)
    # (3.2 + 0.8) / (3.8 + 0.8) = 0.87: the most any gateway + ingest of this design could reach; ours is 0.50.
    assert "3.80 ms of server CPU per file" in line and "**0.87x**" in line and "ours: 0.50x" in line
