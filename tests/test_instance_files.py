"""Stored files of instances: the original and a de-identified copy, streamed and audited; the patient's
identifying attributes only inside the caller's scope (the owner or an admin); every read audited."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import aiohttp
import pydicom
import pytest
from PIL import Image
from structlog.testing import capture_logs

from common.app.problems import PROBLEM_CONTENT_TYPE
from common.messaging.broker import Topology, publish
from common.messaging.messages import ImageResult, InstanceStatus, ProcessResult
from common.storage.blobs import BlobStore
from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from results_service.deid import Deidentifier
from results_service.settings import ResultsSettings
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    client_fixture,
    fetch,
    owner_fixture,
    results_settings_fixture,
    topology_fixture,
    wait_status,
)
from tests.service_auth import as_user as signed_for

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
    item = {"upload_id": uuid.uuid4().hex, "registration": body}
    response = await client.post("/internal/registrations", json={"items": [item]})
    assert response.status == 200, await response.text()
    [answer] = (await response.json())["items"]
    assert answer["status"] == 201, answer
    return str(answer["registered"]["instance_id"])


def as_user(user: str, role: str = "user", **extra: str) -> dict[str, str]:
    return {**signed_for(user, role), **extra}


def blob_store(settings: ResultsSettings) -> BlobStore:
    return BlobStore(Path(settings.blob_dir), settings.keyring())


def corrupt(path: Path, at: int) -> None:
    """Flip one bit of the sealed file on disk at byte `at` (negative: from the end); its chunk fails authentication."""
    sealed = bytearray(path.read_bytes())
    sealed[at] ^= 1
    path.write_bytes(bytes(sealed))


async def assert_undecryptable(
    response: aiohttp.ClientResponse,
    logs: list[MutableMapping[str, Any]],
    database_url: str,
    instance_id: str,
    what: str,
) -> None:
    """A 500 problem that says the stored file cannot be decrypted and why, logged with the instance id for
    operators, and the read audited as a failure."""
    assert response.status == 500 and response.content_type == PROBLEM_CONTENT_TYPE
    detail = (await response.json())["detail"]
    assert f"stored {what} of instance {instance_id} cannot be decrypted" in detail
    assert "key was rotated out or the file is damaged" in detail
    [event] = [e for e in logs if e["event"] == "stored_file_unreadable"]
    assert (event["log_level"], event["instance_id"], event["blob"]) == ("error", instance_id, what)
    correlation = response.headers["X-Request-ID"]
    [row] = await fetch(database_url, "SELECT outcome, detail FROM audit_events WHERE correlation_id = $1", correlation)
    assert row["outcome"] == "failure" and '"status": 500' in row["detail"]


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


async def test_an_undecryptable_stored_file_is_a_500_problem_saying_why_and_the_instance_stays_readable(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path, database_url: str
) -> None:
    instance_id = await store_instance(client, results_settings, owner, samples_dir / SAMPLES[0])
    sha256 = hashlib.sha256((samples_dir / SAMPLES[0]).read_bytes()).hexdigest()
    corrupt(blob_store(results_settings).path(sha256), 200)  # inside the first chunk
    view = await client.get(f"/api/instances/{instance_id}", headers=as_user(owner))
    assert view.status == 200 and (await view.json())["patient"] is None
    for query in ("", "?deidentified=true"):
        with capture_logs() as logs:
            download = await client.get(f"/api/instances/{instance_id}/file{query}", headers=as_user(owner))
        await assert_undecryptable(download, logs, database_url, instance_id, "file")


async def test_an_undecryptable_preview_is_a_500_problem_saying_why(
    client: Any, topology: Topology, results_settings: ResultsSettings, owner: str, samples_dir: Path, database_url: str
) -> None:
    instance_id = await store_instance(client, results_settings, owner, samples_dir / SAMPLES[0])
    png = io.BytesIO()
    Image.new("L", (4, 4), 128).save(png, "PNG")
    store = blob_store(results_settings)
    preview = await store.put_bytes(png.getvalue())
    image = ImageResult(has_pixel_data=True, preview_sha256=preview, processing_ms=1, worker="w:1")
    done = ProcessResult(instance_id=instance_id, upload_id="u", owner=owner, status=InstanceStatus.DONE, result=image)
    await publish(topology.exchange, done, "result.done")
    await wait_status(client, owner, instance_id, "done")
    readable = await client.get(f"/api/instances/{instance_id}/preview.png", headers=as_user(owner))
    assert readable.status == 200 and await readable.read() == png.getvalue()
    corrupt(store.path(preview), -1)  # the authentication tag of its only chunk
    with capture_logs() as logs:
        response = await client.get(f"/api/instances/{instance_id}/preview.png", headers=as_user(owner))
    await assert_undecryptable(response, logs, database_url, instance_id, "preview")


async def test_a_file_tampered_with_further_on_cuts_the_download_short_instead_of_sending_bad_bytes(
    client: Any, results_settings: ResultsSettings, owner: str, samples_dir: Path
) -> None:
    data = (samples_dir / SAMPLES[1]).read_bytes()
    instance_id = await store_instance(client, results_settings, owner, samples_dir / SAMPLES[1])
    path = blob_store(results_settings).path(hashlib.sha256(data).hexdigest())
    corrupt(path, path.stat().st_size // 2)
    response = await client.get(f"/api/instances/{instance_id}/file", headers=as_user(owner))
    assert response.status == 200 and int(response.headers["Content-Length"]) == len(data)
    with pytest.raises(aiohttp.ClientPayloadError):
        await response.read()


async def test_the_openapi_document_lists_the_undecryptable_answer_of_previews_and_downloads(
    aiohttp_client: Any,
) -> None:
    gateway = await aiohttp_client(init_gateway(GatewaySettings()))
    paths = (await (await gateway.get("/api/openapi.json")).json())["paths"]
    for path in ("/api/instances/{instance_id}/preview.png", "/api/instances/{instance_id}/file"):
        answer = paths[path]["get"]["responses"]["500"]
        assert "cannot be decrypted" in answer["description"]
        assert PROBLEM_CONTENT_TYPE in answer["content"]
