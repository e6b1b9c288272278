"""`--wait`: follow processing until every instance of the run is `done` or `failed`.

The uploads are polled (`GET /api/uploads/{id}`, whose files carry their instance's live status) with a
growing, jittered interval: soon after sending most instances are still queued, and a long processing run
should not be polled every half second. Only the uploads with an instance still in flight are asked again.
A skipped file (resume) is followed through the upload that first brought its bytes.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence

from pydantic import ValidationError

from common.messaging.backoff import spread
from common.schemas.instances import UploadView
from common.uploader.client import ServerClient, ServerError, problem_detail
from common.uploader.summary import FINAL_STATUSES, ON_SERVER, FileReport

FIRST_POLL = 0.5
MAX_POLL = 5.0


class WaitTimedOut(ValueError):
    """Processing did not finish within `--wait-timeout`."""


async def _upload_view(client: ServerClient, upload_id: str, gate: asyncio.Semaphore) -> UploadView:
    async with gate:
        reply = await client.call("GET", f"/api/uploads/{upload_id}")
    if reply.status != 200:
        raise ServerError(f"upload {upload_id} cannot be read: {problem_detail(reply)}")
    try:
        return UploadView.model_validate_json(reply.body)
    except ValidationError as exc:
        raise ServerError(f"upload {upload_id}'s answer is not readable: {exc.errors()[0]['msg']}") from None


async def follow(
    client: ServerClient, files: Sequence[FileReport], *, concurrency: int = 8, timeout: float | None = None
) -> None:
    """Poll until every file with an instance has a final `status` (set on the reports as they are learned);
    WaitTimedOut after `timeout` seconds."""
    pending: dict[str, list[FileReport]] = defaultdict(list)
    for report in files:
        if report.outcome in ON_SERVER and report.upload_id and report.status not in FINAL_STATUSES:
            pending[report.upload_id].append(report)
    gate = asyncio.Semaphore(concurrency)
    deadline = None if timeout is None else time.monotonic() + timeout
    interval = FIRST_POLL
    while pending:
        views = await asyncio.gather(*(_upload_view(client, upload_id, gate) for upload_id in pending))
        for view in views:
            by_index = {f.index: f for f in view.files}
            by_instance = {f.instance_id: f for f in view.files if f.instance_id}
            waiting = []
            for report in pending[view.id]:
                seen = (
                    by_index.get(report.index)
                    if report.index is not None
                    else by_instance.get(report.instance_id or "")
                )
                if seen is not None and seen.instance_status is not None:
                    report.status = seen.instance_status.value
                    report.instance_id = seen.instance_id
                if report.status not in FINAL_STATUSES:
                    waiting.append(report)
            if waiting:
                pending[view.id] = waiting
            else:
                del pending[view.id]
        if not pending:
            return
        if deadline is not None and time.monotonic() + interval > deadline:
            left = sum(len(reports) for reports in pending.values())
            raise WaitTimedOut(f"{left} instance(s) still processing after {timeout:g} s")
        await asyncio.sleep(spread(interval))
        interval = min(interval * 1.5, MAX_POLL)
