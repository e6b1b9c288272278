"""Uploads and the live status feed as OpenAPI operations (served by the gateway; uploads answered by
ingest_service, the feed by the gateway itself). The feed's frames are `gateway.feed.frames`."""

from __future__ import annotations

from common.app.openapi import Operation, Reply, json_reply
from common.schemas.accounts_api import RATE_LIMITED, UNAUTHORIZED
from common.schemas.uploads import UploadReceipt

TAG = "uploads"


def upload_operations() -> list[Operation]:
    """`POST /api/uploads` (answered by ingest_service)."""
    return [
        Operation(
            "POST",
            "/api/uploads",
            "Upload DICOM files: one file, a multipart form or related body, or a zip archive; streamed",
            TAG,
            {
                202: json_reply("Every file was stored and queued, found a duplicate, or rejected.", UploadReceipt),
                400: Reply("The body is empty, holds no files, or is not a readable archive."),
                **UNAUTHORIZED,
                413: Reply(
                    "The body is over `UPLOAD_MAX_BYTES`, or an archive over its limits; `files` lists what was taken."
                ),
                415: Reply(
                    "Not one of the content types above (application/dicom, multipart/form-data, "
                    'multipart/related; type="application/dicom", application/zip).'
                ),
                **RATE_LIMITED,
                503: Reply("results_service or RabbitMQ is unavailable; `files` lists what was taken before."),
            },
            description="Each file becomes an instance owned by the caller; the upload is audited. "
            "Send the body as `application/dicom`, `multipart/form-data` (file fields), "
            '`multipart/related; type="application/dicom"` or `application/zip`.',
        ),
    ]


def feed_operations() -> list[Operation]:
    """`GET /api/events` (answered by the gateway itself)."""
    return [
        Operation(
            "GET",
            "/api/events",
            "Live status feed of the caller's instances (WebSocket)",
            TAG,
            {
                101: Reply("Switching to the WebSocket protocol.", ()),
                **UNAUTHORIZED,
            },
            description='Upgrade to a WebSocket; the first frame is `{"type": "auth", "token": ...}` (or send '
            "`Authorization: Bearer` on the upgrade). The server then sends `ready` and one `status` frame per "
            "change of the caller's instances (all instances for admins). Close codes: 4401 bad token, 1013 retry.",
            public=True,  # the token may come in the first frame: the upgrade itself needs none
        ),
    ]
