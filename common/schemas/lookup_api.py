"""`POST /api/instances/lookup` as an OpenAPI operation (served by the gateway, answered by results_service)."""

from __future__ import annotations

from common.app.openapi import Operation, Reply, json_reply
from common.schemas.accounts_api import RATE_LIMITED, UNAUTHORIZED
from common.schemas.lookup import LOOKUP_MAX_BYTES, LOOKUP_MAX_DIGESTS, InstanceLookup, InstanceLookupAnswer

TAG = "instances"


def lookup_operations() -> list[Operation]:
    """The uploader's resume check."""
    return [
        Operation(
            "POST",
            "/api/instances/lookup",
            "Which of these files (by SHA-256) do you hold already",
            TAG,
            {
                200: json_reply(
                    "Your instances among the digests; digests not listed are not yours.", InstanceLookupAnswer
                ),
                400: Reply("The body is not valid JSON."),
                **UNAUTHORIZED,
                413: Reply(f"The body is over {LOOKUP_MAX_BYTES} bytes."),
                415: Reply("The body is not application/json."),
                422: Reply(
                    f"`sha256` is missing, empty, holds more than {LOOKUP_MAX_DIGESTS} items, or an item that is not "
                    "64 hexadecimal digits; `errors` names each."
                ),
                **RATE_LIMITED,
            },
            request_body=(InstanceLookup,),
            description="The resume check of `dicomflow upload`: send up to "
            f"{LOOKUP_MAX_DIGESTS} SHA-256 digests of files; the answer lists the ones you uploaded already, with "
            "the instance, its status and the upload that brought it. Only your own instances are considered, "
            "admins included (this is not a search). A digest given twice is answered once. Audited "
            "(`instance.lookup`, counts only).",
        ),
    ]
