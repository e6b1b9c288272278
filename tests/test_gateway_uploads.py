"""Uploads through the gateway: streamed to the real ingest_service, which alone owns `UPLOAD_MAX_BYTES`.

The gateway counts no upload bytes; a body over ingest's limit, declared or streamed, still reaches
the client as ingest's 413 problem+json, and nothing of it is stored.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from common.app.problems import PROBLEM_CONTENT_TYPE
from tests.ingest_rig import IngestRig, blob_files, gateway_with_user, rig_fixture  # noqa: F401  (fixture, by name)
from tests.pipeline_helpers import (  # noqa: F401  (fixtures, used by name)
    channel_fixture,
    results_settings_fixture,
)

LIMIT = 100_000


@pytest.fixture
async def gateway(rig: IngestRig, aiohttp_client: Any) -> Any:
    """A gateway in front of the rig's results_service and an ingest whose limit is LIMIT, with a user's token."""
    return await gateway_with_user(rig, aiohttp_client, upload_max_bytes=LIMIT)


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 16_384):
        yield data[start : start + 16_384]


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_an_upload_over_ingest_limit_is_ingest_413_through_the_gateway(
    gateway: Any, rig: IngestRig, samples_dir: Path, declared: bool
) -> None:
    sample = (samples_dir / "sample-01-dicom.dcm").read_bytes()
    assert len(sample) > LIMIT
    body = io.BytesIO(sample) if declared else _chunked(sample)
    response = await gateway.post(
        "/api/uploads", data=body, headers={**gateway.headers, "Content-Type": "application/dicom"}
    )
    assert response.status == 413 and response.content_type == PROBLEM_CONTENT_TYPE
    ingest_says = (
        f"The upload is {len(sample)} bytes; the limit is {LIMIT}."
        if declared
        else f"The upload exceeds the limit of {LIMIT} bytes."
    )
    assert (await response.json())["detail"] == ingest_says
    assert blob_files(rig.blob_dir) == []


async def test_an_upload_under_the_limit_passes_the_gateway_unchanged(gateway: Any, rig: IngestRig) -> None:
    response = await gateway.post(
        "/api/uploads", data=b"not dicom", headers={**gateway.headers, "Content-Type": "application/dicom"}
    )
    assert response.status == 202, await response.text()
    assert [f["status"] for f in (await response.json())["files"]] == ["rejected"]
