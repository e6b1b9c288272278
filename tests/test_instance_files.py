"""Stored files of instances: the original and a de-identified copy, streamed and audited; the patient's
identifying attributes only inside the caller's scope (the owner or an admin); every read audited."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pydicom
import pytest

from common.blobs import BlobStore
from common.deid import Deidentifier
from common.identity import ROLE_HEADER, USER_HEADER
from common.problems import PROBLEM_CONTENT_TYPE
from results_service.settings import ResultsSettings
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    fetch,
    owner_fixture,
    results_settings_fixture,
    topology_fixture,
)

SAMPLES = ("sample-01-dicom.dcm", "sample-02-dicom.dcm")


async def store_instance(client: Any, settings: ResultsSettings, owner: str, path: Path) -> str:
    """Put the file in the (encrypted) blob store and register it as `owner`'s; the instance id."""
    data = path.read_bytes()
    store = BlobStore(Path(settings.blob_dir), settings.keyring())
    sha256 = await store.put_bytes(data)
    header = pydicom.dcmread(path, stop_before_pixels=True)
    body = {
        "index": 0,
        "name": path.name,
        "owner": owner,
        "sha256": sha256,
        "size": len(data),
        "outcome": "accepted",
        "dicom": {
            "sop_class_uid": str(header.SOPClassUID),
            "sop_instance_uid": f"{header.SOPInstanceUID}.{uuid.uuid4().int % 10**6}",
            "study_instance_uid": str(header.StudyInstanceUID),
            "series_instance_uid": str(header.SeriesInstanceUID),
            "modality": str(header.Modality),
            "transfer_syntax_uid": str(header.file_meta.TransferSyntaxUID),
        },
    }
    response = await client.post(f"/internal/uploads/{uuid.uuid4().hex}/files", json=body)
    assert response.status == 201, await response.text()
    return str((await response.json())["instance_id"])


def as_user(user: str, role: str = "user", **extra: str) -> dict[str, str]:
    return {USER_HEADER: user, ROLE_HEADER: role, **extra}


@pytest.mark.parametrize("sample", SAMPLES)
async def test_the_owner_downloads_the_original_file_byte_for_byte(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path, sample: str
) -> None:
    instance_id = await store_instance(client, results_settings, owner, samples_dir / sample)
    response = await client.get(f"/api/instances/{instance_id}/file", headers=as_user(owner))
    assert response.status == 200
    assert response.content_type == "application/dicom"
    assert response.headers["Content-Disposition"] == f'attachment; filename="{instance_id}.dcm"'
    assert response.headers["Cache-Control"] == "private, no-store"
    body = await response.read()
    assert body == (samples_dir / sample).read_bytes()
    assert int(response.headers["Content-Length"]) == len(body)


@pytest.mark.parametrize("sample", SAMPLES)
async def test_the_deidentified_copy_follows_the_basic_profile_and_keeps_the_pixels(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path, sample: str
) -> None:
    raw = (samples_dir / sample).read_bytes()
    original = pydicom.dcmread(io.BytesIO(raw))
    instance_id = await store_instance(client, results_settings, owner, samples_dir / sample)
    response = await client.get(f"/api/instances/{instance_id}/file?deidentified=true", headers=as_user(owner))
    assert response.status == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="{instance_id}-deidentified.dcm"'
    body = await response.read()
    assert int(response.headers["Content-Length"]) == len(body)
    # The streamed copy (de-identified header + the original's pixel data element) is exactly the
    # whole-file de-identification under the service's UID key.
    assert body == Deidentifier(results_settings.deid_uid_key()).deidentify_bytes(raw)
    copy = pydicom.dcmread(io.BytesIO(body))
    assert copy.PatientIdentityRemoved == "YES"
    for keyword in ("PatientName", "PatientID", "PatientBirthDate"):
        value = str(original.get(keyword) or "")
        if value:
            assert str(copy.get(keyword) or "") != value and value.encode() not in body, keyword
    assert copy.StudyInstanceUID != original.StudyInstanceUID and copy.StudyInstanceUID.startswith("2.25.")
    assert copy.PixelData == original.PixelData
    again = await client.get(f"/api/instances/{instance_id}/file?deidentified=1", headers=as_user(owner))
    assert await again.read() == body  # consistent new UIDs across downloads


async def test_nobody_but_the_owner_and_admins_reaches_a_file(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path
) -> None:
    instance_id = await store_instance(client, results_settings, owner, samples_dir / SAMPLES[0])
    missing = uuid.uuid4().hex
    for query in ("", "?deidentified=true"):
        theirs = await client.get(f"/api/instances/{instance_id}/file{query}", headers=as_user("someone-else"))
        nothing = await client.get(f"/api/instances/{missing}/file{query}", headers=as_user("someone-else"))
        assert theirs.status == nothing.status == 404
        assert theirs.content_type == nothing.content_type == PROBLEM_CONTENT_TYPE
        first, second = await theirs.json(), await nothing.json()
        assert first["detail"].replace(instance_id, "X") == second["detail"].replace(missing, "X")
        admin = await client.get(f"/api/instances/{instance_id}/file{query}", headers=as_user("root", "admin"))
        assert admin.status == 200 and len(await admin.read()) > 0


@pytest.mark.parametrize("query", ["deidentified=maybe", "format=zip"])
async def test_bad_download_queries_are_422(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path, query: str
) -> None:
    instance_id = await store_instance(client, results_settings, owner, samples_dir / SAMPLES[0])
    response = await client.get(f"/api/instances/{instance_id}/file?{query}", headers=as_user(owner))
    assert response.status == 422 and response.content_type == PROBLEM_CONTENT_TYPE


async def test_a_file_missing_from_the_blob_store_is_a_404_saying_so(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path
) -> None:
    instance_id = await store_instance(client, results_settings, owner, samples_dir / SAMPLES[0])
    sha256 = hashlib.sha256((samples_dir / SAMPLES[0]).read_bytes()).hexdigest()
    BlobStore(Path(results_settings.blob_dir), results_settings.keyring()).path(sha256).unlink()
    response = await client.get(f"/api/instances/{instance_id}/file", headers=as_user(owner))
    assert response.status == 404 and "missing" in (await response.json())["detail"]


async def test_patient_fields_come_only_with_the_single_instance_read_of_the_owner_or_an_admin(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path
) -> None:
    path = samples_dir / SAMPLES[0]
    header = pydicom.dcmread(path, stop_before_pixels=True)
    instance_id = await store_instance(client, results_settings, owner, path)
    expected = {
        "name": str(header.PatientName) or None,
        "id": str(header.PatientID) or None,
        "birth_date": str(header.get("PatientBirthDate") or "") or None,
    }
    for headers in (as_user(owner), as_user("root", "admin")):
        view = await (await client.get(f"/api/instances/{instance_id}", headers=headers)).json()
        assert view["patient"] == expected
    listed = await (await client.get("/api/instances", headers=as_user(owner))).json()
    assert [item["patient"] for item in listed["items"]] == [None]
    other = await client.get(f"/api/instances/{instance_id}", headers=as_user("someone-else"))
    assert other.status == 404
    assert str(header.PatientName).encode() not in await other.read()


async def test_every_read_of_patient_data_is_audited(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path, database_url: str
) -> None:
    instance_id = await store_instance(client, results_settings, owner, samples_dir / SAMPLES[0])
    [upload_id] = [
        row["upload_id"]
        for row in await fetch(database_url, "SELECT upload_id FROM instances WHERE id = $1", instance_id)
    ]
    correlation = f"audit-{uuid.uuid4().hex}"
    headers = as_user(owner, **{"X-Request-ID": correlation})
    calls = [
        (f"/api/uploads/{upload_id}", 200),
        ("/api/instances", 200),
        (f"/api/instances/{instance_id}", 200),
        (f"/api/instances/{instance_id}/preview.png", 404),  # not processed: no preview yet
        (f"/api/instances/{instance_id}/file", 200),
        (f"/api/instances/{instance_id}/file?deidentified=true", 200),
        ("/api/studies", 200),
    ]
    for path, status in calls:
        response = await client.get(path, headers=headers)
        assert response.status == status, path
        await response.read()
    stranger = await client.get(
        f"/api/instances/{instance_id}/file", headers=as_user("someone-else", **{"X-Request-ID": correlation})
    )
    assert stranger.status == 404
    rows = await fetch(
        database_url,
        "SELECT actor_id, action, resource_type, resource_id, outcome, detail FROM audit_events"
        " WHERE correlation_id = $1 ORDER BY id",
        correlation,
    )
    assert [(r["actor_id"], r["action"], r["resource_type"], r["resource_id"], r["outcome"]) for r in rows] == [
        (owner, "upload.read", "upload", upload_id, "success"),
        (owner, "instance.list", "instance", None, "success"),
        (owner, "instance.read", "instance", instance_id, "success"),
        (owner, "instance.preview", "instance", instance_id, "failure"),
        (owner, "instance.download", "instance", instance_id, "success"),
        (owner, "instance.download_deidentified", "instance", instance_id, "success"),
        (owner, "study.list", "study", None, "success"),
        ("someone-else", "instance.download", "instance", instance_id, "failure"),
    ]


async def test_an_unreadable_stored_file_leaves_the_instance_readable_without_patient_fields(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path
) -> None:
    instance_id = await store_instance(client, results_settings, owner, samples_dir / SAMPLES[0])
    sha256 = hashlib.sha256((samples_dir / SAMPLES[0]).read_bytes()).hexdigest()
    path = BlobStore(Path(results_settings.blob_dir), results_settings.keyring()).path(sha256)
    sealed = bytearray(path.read_bytes())
    sealed[200] ^= 1  # inside the first chunk: authentication fails
    path.write_bytes(bytes(sealed))
    view = await client.get(f"/api/instances/{instance_id}", headers=as_user(owner))
    assert view.status == 200 and (await view.json())["patient"] is None
    download = await client.get(f"/api/instances/{instance_id}/file", headers=as_user(owner))
    assert download.status == 500 and download.content_type == PROBLEM_CONTENT_TYPE
    assert "cannot be read" in (await download.json())["detail"]


async def test_a_file_tampered_with_further_on_cuts_the_download_short_instead_of_sending_bad_bytes(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path
) -> None:
    data = (samples_dir / SAMPLES[1]).read_bytes()
    instance_id = await store_instance(client, results_settings, owner, samples_dir / SAMPLES[1])
    path = BlobStore(Path(results_settings.blob_dir), results_settings.keyring()).path(hashlib.sha256(data).hexdigest())
    sealed = bytearray(path.read_bytes())
    sealed[len(sealed) // 2] ^= 1
    path.write_bytes(bytes(sealed))
    response = await client.get(f"/api/instances/{instance_id}/file", headers=as_user(owner))
    assert response.status == 200 and int(response.headers["Content-Length"]) == len(data)
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()
