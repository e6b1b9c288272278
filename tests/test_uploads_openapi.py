"""`POST /api/uploads` documents each request body ingest_service accepts, with its limits, and nothing else."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from common.schemas.uploads_api import upload_operations
from gateway.main import init_app as init_gateway
from gateway.settings import GatewaySettings
from tests.ingest_rig import IngestRig, rig_fixture, uploader  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    owner_fixture,
    results_settings_fixture,
)

ACCEPTED = {
    "application/dicom",
    "multipart/form-data",
    "multipart/related",
    "application/zip",
    "application/x-zip-compressed",
}


async def upload_operation(aiohttp_client: Any) -> dict[str, Any]:
    client = await aiohttp_client(init_gateway(GatewaySettings()))
    document: dict[str, Any] = await (await client.get("/api/openapi.json")).json()
    validate(document)
    operation: dict[str, Any] = document["paths"]["/api/uploads"]["post"]
    return operation


async def test_the_upload_operation_lists_each_accepted_content_type_with_the_limits(aiohttp_client: Any) -> None:
    operation = await upload_operation(aiohttp_client)
    body = operation["requestBody"]
    assert body["required"] is True
    assert set(body["content"]) == ACCEPTED
    form = body["content"]["multipart/form-data"]
    assert form["schema"]["properties"]["file"]["items"] == {"type": "string", "format": "binary"}
    assert form["encoding"]["file"]["contentType"] == "application/dicom, application/octet-stream"
    for setting in ("UPLOAD_MAX_BYTES", "UPLOAD_MAX_FILES", "ZIP_MAX_TOTAL_BYTES", "ZIP_MAX_RATIO", "identity"):
        assert setting in body["description"], setting
    assert {"400", "413", "415"} <= set(operation["responses"])


async def test_ingest_takes_every_documented_content_type_and_refuses_any_other(rig: IngestRig, owner: str) -> None:
    """Each documented type reaches its reader (a 400 for a body that is not what it says, never a 415)."""
    [operation] = upload_operations()
    assert {body.content_type for body in operation.raw_bodies} == ACCEPTED
    client = await rig.make()
    parameters = {"multipart/form-data": "; boundary=x", "multipart/related": '; type="application/dicom"; boundary=x'}
    for content_type in sorted(ACCEPTED):
        headers = {"Content-Type": content_type + parameters.get(content_type, ""), **uploader(owner)}
        response = await client.post("/upload", data=b"--y\r\n\r\nnot it\r\n--y--\r\n", headers=headers)
        assert response.status in (202, 400), (content_type, await response.text())
    refused = await client.post("/upload", data=b"x", headers={"Content-Type": "application/json", **uploader(owner)})
    assert refused.status == 415
