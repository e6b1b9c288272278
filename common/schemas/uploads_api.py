"""Uploads and the live status feed as OpenAPI operations (served by the gateway; uploads answered by
ingest_service, the feed by the gateway itself). The feed's frames are `gateway.feed.frames`."""

from __future__ import annotations

from common.app.openapi import Operation, RawBody, Reply, json_reply, query_params
from common.schemas.accounts_api import RATE_LIMITED, UNAUTHORIZED
from common.schemas.registrations import ATOMIC_MAX_FILES
from common.schemas.uploads import NOT_TAKEN_REASON, UploadQuery, UploadReceipt

TAG = "uploads"

_BINARY = {"type": "string", "format": "binary"}
_LIMITS = (
    "Limits (ingest_service's settings, defaults in brackets): the body `UPLOAD_MAX_BYTES` [4 GiB]; files per "
    "upload, parts of a multipart body or entries of a zip archive, `UPLOAD_MAX_FILES` [10000]; a zip archive's "
    "total uncompressed size `ZIP_MAX_TOTAL_BYTES` [16 GiB] and each entry's expansion `ZIP_MAX_RATIO` [100:1]. "
    "`Content-Encoding` must be absent or `identity` (send files compressed in a zip archive instead)."
)
UPLOAD_BODIES = (
    RawBody("application/dicom", {**_BINARY, "description": "One DICOM file (name it with Content-Disposition)."}),
    RawBody(
        "multipart/form-data",
        {
            "type": "object",
            "properties": {
                "file": {
                    "type": "array",
                    "items": _BINARY,
                    "description": "The files: every part with a filename is one (any field name); other "
                    "fields are ignored; an empty part is rejected and not registered.",
                }
            },
        },
        encoding={"file": {"contentType": "application/dicom, application/octet-stream"}},
    ),
    RawBody(
        "multipart/related",
        {
            **_BINARY,
            "description": 'DICOMweb STOW-RS style: the Content-Type carries `type="application/dicom"`; each part '
            "is one file (application/dicom), named by its Content-Location.",
        },
    ),
    RawBody("application/zip", {**_BINARY, "description": "A zip archive of DICOM files (stored or deflated)."}),
    RawBody("application/x-zip-compressed", {**_BINARY, "description": "The same as application/zip."}),
)


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
                400: Reply(
                    "The body is empty, holds no files, is a malformed multipart body or an unreadable archive, "
                    "or ended early; `files` lists what was taken."
                ),
                **UNAUTHORIZED,
                413: Reply(
                    "The body is over `UPLOAD_MAX_BYTES`, holds more than `UPLOAD_MAX_FILES` parts, or an archive "
                    "is over its limits; `files` lists what was taken."
                ),
                415: Reply(
                    "Not one of the content types above (application/dicom, multipart/form-data, "
                    'multipart/related; type="application/dicom", application/zip), or a `Content-Encoding` '
                    "other than identity."
                ),
                422: Reply(
                    "`?atomic=true` and a file is rejected: nothing was taken; `files` lists every file, the "
                    f"rejected ones with their reason, the valid ones with {NOT_TAKEN_REASON!r}. Or a query "
                    "parameter is invalid or unknown (`errors` names it)."
                ),
                **RATE_LIMITED,
                503: Reply("results_service or RabbitMQ is unavailable; `files` lists what was taken before."),
            },
            description="Each file becomes an instance owned by the caller; the upload is audited. "
            "Send the body as `application/dicom`, `multipart/form-data` (file fields), "
            '`multipart/related; type="application/dicom"` or `application/zip`. A file that is not a valid '
            "DICOM instance is rejected with a reason and the others are taken; with `?atomic=true` the upload is "
            "taken whole or not at all (every file validated and staged first, then all registered in one "
            f"transaction; at most {ATOMIC_MAX_FILES} files). " + _LIMITS,
            params=query_params(UploadQuery),
            raw_bodies=UPLOAD_BODIES,
            request_description=_LIMITS,
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
