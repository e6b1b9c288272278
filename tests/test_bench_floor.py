"""The pipeline benchmark's floor apps: a body posted to the proxy crosses both hops whole and is answered
like an accepted upload, so the floor measures the two hops' data path and the load generator's check holds."""

from __future__ import annotations

import io
import os
from typing import Any

from bench.hop_floor_apps import RECEIVED, UPLOADS, proxy_app, received_key, sink_app
from common.schemas.uploads import UploadReceipt

MiB = 1024**2


async def test_a_body_posted_to_the_proxy_reaches_the_sink_whole_and_is_answered_accepted(
    aiohttp_server: Any, aiohttp_client: Any
) -> None:
    sink = sink_app()
    sink_server = await aiohttp_server(sink)
    client = await aiohttp_client(proxy_app(str(sink_server.make_url("")), max_body=64 * MiB))
    bodies = [os.urandom(3 * MiB + 17), os.urandom(1000)]

    answers = []
    headers = {"Content-Type": "application/dicom"}
    for body in bodies:
        async with client.post(UPLOADS, data=io.BytesIO(body), headers=headers) as response:
            answers.append((response.status, await response.json()))

    assert [status for status, _ in answers] == [202, 202]
    receipts = [UploadReceipt.model_validate(body) for _, body in answers]
    assert [[f.status for f in receipt.files] for receipt in receipts] == [["accepted"], ["accepted"]]
    assert receipts[0].upload_id != receipts[1].upload_id
    assert sink[received_key].requests == 2
    assert sink[received_key].bytes == sum(len(body) for body in bodies)
    async with client.session.get(sink_server.make_url(RECEIVED)) as response:
        assert await response.json() == {"requests": 2, "bytes": sum(len(body) for body in bodies)}
