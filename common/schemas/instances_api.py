"""The read API of uploads, instances and studies as OpenAPI operations (served by the gateway,
implemented by results_service). Every answer is scoped to the caller: another user's upload or
instance is a 404, exactly like a missing one."""

from __future__ import annotations

from common.app.openapi import Operation, Param, Reply, json_reply, query_params
from common.schemas.accounts_api import RATE_LIMITED, UNAUTHORIZED
from common.schemas.instances import (
    ID_PATTERN,
    INSTANCE_ID_PATTERN,
    InstanceFileQuery,
    InstanceListQuery,
    InstancePage,
    InstanceView,
    StudyListQuery,
    StudyPage,
    UploadView,
)

TAG = "instances"
_UPLOAD_ID = Param(
    "upload_id",
    "path",
    {"type": "string", "pattern": ID_PATTERN},
    "The id `POST /api/uploads` answered with.",
    required=True,
)
_INSTANCE_ID = Param(
    "instance_id",
    "path",
    {"type": "string", "pattern": INSTANCE_ID_PATTERN},
    "The instance's id: 32 lowercase hexadecimal digits.",
    required=True,
)
_BAD_QUERY = {422: Reply("A query parameter is invalid or unknown; `errors` names each.")}
_TOKEN = {**UNAUTHORIZED, **RATE_LIMITED}
_UNDECRYPTABLE = {
    500: Reply("The stored file cannot be decrypted (its key was rotated out, or it is damaged); logged and audited.")
}


def instance_operations() -> list[Operation]:
    """The operations of `/api/uploads/{id}`, `/api/instances`, previews and `/api/studies`."""
    return [
        Operation(
            "GET",
            "/api/uploads/{upload_id}",
            "Read an upload: each file's outcome at the door and its instance's live status",
            TAG,
            {200: json_reply("The upload.", UploadView), 404: Reply("No upload of yours has this id."), **_TOKEN},
            params=(_UPLOAD_ID,),
        ),
        Operation(
            "GET",
            "/api/instances",
            "List your instances, oldest first, a page at a time",
            TAG,
            {200: json_reply("One page.", InstancePage), **_BAD_QUERY, **_TOKEN},
            params=query_params(InstanceListQuery),
            slash_twin=True,
        ),
        Operation(
            "GET",
            "/api/instances/{instance_id}",
            "Read one instance: status, identifying UIDs, the processing result, the reason when failed",
            TAG,
            {
                200: json_reply("The instance.", InstanceView),
                404: Reply("No instance of yours has this id."),
                **_TOKEN,
            },
            params=(_INSTANCE_ID,),
        ),
        Operation(
            "GET",
            "/api/instances/{instance_id}/preview.png",
            "The PNG preview of the middle frame (at most 256 px)",
            TAG,
            {
                200: Reply("The PNG image.", (), "image/png"),
                304: Reply("Unchanged since the ETag sent in If-None-Match.", (), "image/png"),
                404: Reply("No instance of yours has this id, or it has no preview (yet)."),
                **_UNDECRYPTABLE,
                **_TOKEN,
            },
            params=(_INSTANCE_ID,),
        ),
        Operation(
            "GET",
            "/api/instances/{instance_id}/file",
            "Download the stored DICOM file, or a de-identified copy (PS3.15 basic profile)",
            TAG,
            {
                200: Reply("The Part 10 file, streamed (`Content-Disposition: attachment`).", (), "application/dicom"),
                404: Reply("No instance of yours has this id (another user's answers the same)."),
                422: Reply("A query parameter is invalid or unknown."),
                **_UNDECRYPTABLE,
                **_TOKEN,
            },
            params=(_INSTANCE_ID, *query_params(InstanceFileQuery)),
            description="Only the owner and admins can reach a file; every download, de-identified or not, "
            "is audited. The de-identified copy has new UIDs (consistent across downloads), no private "
            "attributes and the pixel data unchanged.",
        ),
        Operation(
            "GET",
            "/api/studies",
            "List your studies with the count of instances in each state",
            TAG,
            {200: json_reply("One page.", StudyPage), **_BAD_QUERY, **_TOKEN},
            params=query_params(StudyListQuery),
            slash_twin=True,
            description="Studies are ordered by the arrival of their first instance, then by Study Instance UID, so "
            "new studies go to the last page; `total` counts them all and `next` is the next page's path.",
        ),
    ]
