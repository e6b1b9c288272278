"""The job's memory estimate (`common.dicom.cost`): exact figures for the sample files and for each kind of
transfer syntax, ingest's job carrying it and routed by it, and the figure results_service stores for the
reconciler being the same one."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import uid as uids

from common.dicom.cost import JobCost, estimate_job_cost
from common.dicom.validation import validate_file
from common.messaging.broker import JOB_LARGE, JOB_STANDARD
from common.messaging.jobs import build_job, job_routing_key, routing_cost
from common.messaging.messages import ProcessJob
from common.schemas.instances import DicomMetadata
from tests.ingest_rig import IngestRig, rig_fixture, uploader  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    owner_fixture,
    results_settings_fixture,
)

# sample-01: 512 x 512, 1 frame, 1 sample of 16 bits, Explicit VR Little Endian (native), 594,998 bytes.
SAMPLE_01_COST = JobCost(decoded_bytes=512 * 512 * 2, encoded_bytes=0)
# sample-02: 512 x 512, 96 frames, 1 sample of 8 bits, JPEG Baseline (encapsulated), 1,702,398 bytes: one encoded
# frame is ceil(1,702,398 / 96) = 17,734 bytes.
SAMPLE_02_COST = JobCost(decoded_bytes=512 * 512 * 96, encoded_bytes=17_734)


def header(**fields: object) -> DicomMetadata:
    base: dict[str, object] = {
        "sop_class_uid": "1.2.840.10008.5.1.4.1.1.4",
        "sop_instance_uid": "1.2.3.4",
        "study_instance_uid": "1.2.3",
        "series_instance_uid": "1.2.3.5",
        "transfer_syntax_uid": uids.ExplicitVRLittleEndian,
    }
    return DicomMetadata.model_validate({**base, **fields})


def test_the_sample_files_cost_their_decoded_pixels_and_one_encoded_frame(samples_dir: Path) -> None:
    for name, expected in (("sample-01-dicom.dcm", SAMPLE_01_COST), ("sample-02-dicom.dcm", SAMPLE_02_COST)):
        path = samples_dir / name
        assert estimate_job_cost(validate_file(path), path.stat().st_size) == expected, name
    assert SAMPLE_01_COST.memory_bytes == 524_288
    assert SAMPLE_02_COST.memory_bytes == 25_183_558


@pytest.mark.parametrize(
    ("syntax", "encoded"),
    [
        (uids.ExplicitVRLittleEndian, 0),
        (uids.ImplicitVRLittleEndian, 0),
        (uids.JPEG2000Lossless, 250),  # ceil(1000 / 4): one encoded frame
        (uids.RLELossless, 250),
        (uids.DeflatedExplicitVRLittleEndian, 1000),  # inflated whole
    ],
)
def test_the_transfer_syntax_adds_what_it_holds_encoded(syntax: str, encoded: int) -> None:
    metadata = header(
        rows=10, columns=20, number_of_frames=4, samples_per_pixel=3, bits_allocated=8, transfer_syntax_uid=syntax
    )
    assert estimate_job_cost(metadata, 1000) == JobCost(decoded_bytes=10 * 20 * 4 * 3, encoded_bytes=encoded)


def test_bits_allocated_round_up_to_whole_bytes_and_missing_fields_take_their_defaults() -> None:
    assert estimate_job_cost(header(rows=2, columns=2, bits_allocated=1), 9).decoded_bytes == 4
    assert estimate_job_cost(header(rows=2, columns=2, bits_allocated=12), 9).decoded_bytes == 8
    assert estimate_job_cost(header(rows=2, columns=2, bits_allocated=32, samples_per_pixel=3), 9).decoded_bytes == 48
    # registered before the fields were recorded: 1 frame, 1 sample, 16 bits
    assert estimate_job_cost(header(rows=2, columns=2), 9).decoded_bytes == 8


def test_an_object_without_pixel_data_costs_nothing() -> None:
    assert estimate_job_cost(header(), 5000).memory_bytes == 0


def test_routing_compares_the_estimate_and_a_job_without_one_by_its_size() -> None:
    fields = {
        "instance_id": "a" * 32,
        "upload_id": "b" * 32,
        "owner": "alice",
        "sha256": "c" * 64,
        "size": 10,
        "sop_class_uid": "1.2",
        "transfer_syntax_uid": uids.ExplicitVRLittleEndian,
    }
    job = build_job(**fields, cost_bytes=5000)
    assert job.message_id == f"{'a' * 32}.job.1"
    assert job_routing_key(routing_cost(job), 4999) == JOB_LARGE
    assert job_routing_key(routing_cost(job), 5000) == JOB_STANDARD
    legacy = ProcessJob.model_validate_json(job.model_dump_json(exclude={"cost_bytes"}))  # a v1 job of before
    assert legacy.cost_bytes is None
    assert job_routing_key(routing_cost(legacy), 9) == JOB_LARGE


@pytest.mark.parametrize(
    ("large_job_bytes", "queue"),
    [(SAMPLE_02_COST.memory_bytes - 1, "large"), (SAMPLE_02_COST.memory_bytes, "standard")],
)
async def test_ingests_job_carries_the_estimate_results_service_stores_and_is_routed_by_it(
    rig: IngestRig, owner: str, sample_02: bytes, large_job_bytes: int, queue: str
) -> None:
    client = await rig.make(large_job_bytes=large_job_bytes)
    headers = {"Content-Type": "application/dicom", **uploader(owner)}
    response = await client.post("/upload", data=io.BytesIO(sample_02), headers=headers)
    assert response.status == 202, await response.text()
    names = {"large": rig.names.jobs_large, "standard": rig.names.jobs}
    [message] = await rig.drain(names[queue])
    assert [m for name in names.values() if name != names[queue] for m in await rig.drain(name)] == []
    job = ProcessJob.model_validate_json(message.body)
    assert job.cost_bytes == SAMPLE_02_COST.memory_bytes
    [row] = await rig.rows("SELECT cost_bytes FROM instances WHERE id = $1", job.instance_id)
    assert row["cost_bytes"] == job.cost_bytes  # what the reconciler republishes with
