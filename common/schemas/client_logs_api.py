"""Client logs as OpenAPI operations (served by the gateway, stored and answered by results_service)."""

from __future__ import annotations

from common.app.openapi import Operation, Param, RawBody, Reply, json_reply, query_params
from common.schemas.accounts_api import RATE_LIMITED, UNAUTHORIZED
from common.schemas.client_logs import (
    CLIENT_LOG_ID_PATTERN,
    CLIENT_LOG_TYPES,
    ClientLogCreated,
    ClientLogCreateQuery,
    ClientLogListQuery,
    ClientLogPage,
)

TAG = "client-logs"
_TOKEN = {**UNAUTHORIZED, **RATE_LIMITED}
_LOG_ID = Param(
    "log_id",
    "path",
    {"type": "string", "pattern": CLIENT_LOG_ID_PATTERN},
    "The id `POST /api/client-logs` answered with.",
    required=True,
)
_TEXT = {"type": "string", "description": "The log, as the client wrote it (UTF-8)."}
_BODIES = tuple(RawBody(content_type, _TEXT) for content_type in CLIENT_LOG_TYPES)


def client_log_operations() -> list[Operation]:
    """`POST /api/client-logs`, `GET /api/client-logs`, `GET /api/client-logs/{log_id}`."""
    return [
        Operation(
            "POST",
            "/api/client-logs",
            "Send a client's log (e.g. of a `dicomflow upload` run) for support to read",
            TAG,
            {
                201: json_reply("Stored.", ClientLogCreated),
                400: Reply("The body is empty."),
                **UNAUTHORIZED,
                413: Reply("The body is over `CLIENT_LOG_MAX_BYTES` [1 MiB]."),
                415: Reply(f"The body is not one of {', '.join(CLIENT_LOG_TYPES)}."),
                422: Reply("A query parameter is invalid or unknown; `errors` names each."),
                **RATE_LIMITED,
            },
            params=query_params(ClientLogCreateQuery),
            raw_bodies=_BODIES,
            description="The body is stored as sent, owned by the caller, and audited (`client_log.create`). "
            "Only the owner and admins can read it back.",
        ),
        Operation(
            "GET",
            "/api/client-logs",
            "List your client logs (admins: everyone's), newest first, a page at a time",
            TAG,
            {
                200: json_reply("One page.", ClientLogPage),
                422: Reply("A query parameter is invalid or unknown; `errors` names each."),
                **_TOKEN,
            },
            params=query_params(ClientLogListQuery),
        ),
        Operation(
            "GET",
            "/api/client-logs/{log_id}",
            "Read one client log: its text, with the content type it was sent with",
            TAG,
            {
                200: Reply("The log as stored.", (), "text/plain"),
                404: Reply("No log of yours has this id (another user's answers the same)."),
                **_TOKEN,
            },
            params=(_LOG_ID,),
            description="Audited (`client_log.read`).",
        ),
    ]
