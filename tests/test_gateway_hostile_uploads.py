"""Hostile uploads through the gateway, to the real ingest_service: its 4xx reaches the client unchanged.
The gateway never decodes a request body itself, so every encoding reaches ingest as sent."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from common.app.problems import PROBLEM_CONTENT_TYPE
from tests.ingest_rig import IngestRig, blob_files, gateway_with_user, rig_fixture  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    results_settings_fixture,
)


@pytest.fixture
async def gateway(rig: IngestRig, aiohttp_client: Any) -> Any:
    """A gateway in front of the rig's results_service and an ingest, with a user's token."""
    return await gateway_with_user(rig, aiohttp_client)


@pytest.mark.parametrize("encoding", ["gzip", "br", "deflate", "x-unknown"])
async def test_a_compressed_upload_is_ingest_415_through_the_gateway(
    gateway: Any, rig: IngestRig, samples_dir: Path, encoding: str
) -> None:
    sample = (samples_dir / "sample-01-dicom.dcm").read_bytes()
    headers = {**gateway.headers, "Content-Type": "application/dicom", "Content-Encoding": encoding}
    response = await gateway.post("/api/uploads", data=gzip.compress(sample), headers=headers)
    text = await response.text()
    assert response.status == 415 and response.content_type == PROBLEM_CONTENT_TYPE, text
    assert (await response.json())["detail"].startswith(f"Content-Encoding {encoding!r} is not accepted")
    assert blob_files(rig.blob_dir) == []
