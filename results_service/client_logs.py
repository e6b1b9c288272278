"""`/api/client-logs`: logs a client sends for support, stored in PostgreSQL; the owner and admins read them back.

The body is taken as sent (text/plain or NDJSON, up to `CLIENT_LOG_MAX_BYTES`, counted while it is read),
stored as bytes and answered as `text/plain` with `nosniff`, so a log that holds markup is never rendered.
Another owner's log answers exactly like a missing one (404). Every call is audited: `client_log.create`,
`client_log.list`, `client_log.read` (ids and sizes only: a log may quote file names).
"""

from __future__ import annotations

import re
import uuid

from aiohttp import web
from pydantic import BaseModel

from common.app.bodies import read_body_bytes, read_query
from common.app.pagination import next_page
from common.app.problems import BadRequest, NotFound, UnsupportedMediaType
from common.auth.identity import Caller, request_caller
from common.schemas.client_logs import (
    CLIENT_LOG_ID_PATTERN,
    CLIENT_LOG_TYPES,
    ClientLogCreated,
    ClientLogCreateQuery,
    ClientLogListQuery,
    ClientLogPage,
    ClientLogView,
)
from common.schemas.text import shown
from results_service.audit import audited
from results_service.keys import settings_key
from results_service.models.client_logs import ClientLog

RESOURCE = "client_log"
_LOG_ID = re.compile(CLIENT_LOG_ID_PATTERN)


class ClientLogNotFound(NotFound):
    """No log with this id for this caller."""

    def __init__(self, log_id: str) -> None:
        super().__init__(f"Client log '{shown(log_id)}' was not found.")


def _json(model: BaseModel, *, status: int = 200) -> web.Response:
    return web.Response(status=status, body=model.model_dump_json().encode(), content_type="application/json")


def _view(row: ClientLog) -> ClientLogView:
    return ClientLogView(
        id=row.id,
        size=row.size,
        created_at=row.created_at,
        upload_id=row.upload_id,
        owner=row.owner,
        name=row.name,
        content_type=row.content_type,
    )


async def handle_create(request: web.Request) -> web.Response:
    """POST /api/client-logs?upload_id=&name=: store the body; 201 with the new log's id."""
    async with audited(request, "client_log.create", resource_type=RESOURCE) as record:
        query = read_query(request, ClientLogCreateQuery)
        if request.content_type not in CLIENT_LOG_TYPES:
            raise UnsupportedMediaType(
                f"Send the log as {' or '.join(CLIENT_LOG_TYPES)}, not {request.content_type!r}."
            )
        body = await read_body_bytes(request, max_bytes=request.app[settings_key].client_log_max_bytes)
        if not body:
            raise BadRequest("The body is empty; send the log as the body.")
        row = await ClientLog.create(
            id=uuid.uuid4().hex,
            owner=request_caller(request).user_id,
            upload_id=query.upload_id,
            name=query.name,
            content_type=request.content_type,
            size=len(body),
            body=body,
        )
        record.update(resource_id=row.id, size=row.size, upload_id=row.upload_id)
    created = ClientLogCreated(id=row.id, size=row.size, created_at=row.created_at, upload_id=row.upload_id)
    response = _json(created, status=201)
    response.headers["Location"] = f"/api/client-logs/{row.id}"
    return response


async def list_logs(query: ClientLogListQuery, caller: Caller) -> tuple[list[ClientLogView], int]:
    """A page of the caller's logs (everyone's for admins), newest first, and how many match."""
    selected = ClientLog.filter(**caller.owner_filter())
    if query.upload_id is not None:
        selected = selected.filter(upload_id=query.upload_id)
    total = await selected.count()
    # The bodies stay in the database: a page lists up to 1000 logs of up to a MiB each.
    rows = (
        await selected.order_by("-created_at", "-id")
        .offset(query.offset)
        .limit(query.limit)
        .only("id", "owner", "upload_id", "name", "content_type", "size", "created_at")
    )
    return [_view(row) for row in rows], total


async def handle_list(request: web.Request) -> web.Response:
    """GET /api/client-logs?upload_id=&limit=&offset=: a page of logs, newest first."""
    async with audited(request, "client_log.list", resource_type=RESOURCE) as record:
        query = read_query(request, ClientLogListQuery)
        items, total = await list_logs(query, request_caller(request))
        record["count"] = len(items)
    link = next_page(request.rel_url, limit=query.limit, offset=query.offset, shown=len(items), total=total)
    return _json(ClientLogPage(items=items, total=total, limit=query.limit, offset=query.offset, next=link))


async def handle_get(request: web.Request) -> web.Response:
    """GET /api/client-logs/{log_id}: the log's text (owner or admin; anyone else's is a 404)."""
    log_id = request.match_info["log_id"]
    async with audited(request, "client_log.read", resource_type=RESOURCE, resource_id=log_id) as record:
        if not _LOG_ID.match(log_id):  # cannot exist: not found, without a query
            raise ClientLogNotFound(log_id)
        row = await ClientLog.filter(id=log_id, **request_caller(request).owner_filter()).first()
        if row is None:
            raise ClientLogNotFound(log_id)
        record["size"] = row.size
    headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
    return web.Response(body=bytes(row.body), content_type="text/plain", charset="utf-8", headers=headers)
