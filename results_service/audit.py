"""The audit trail: append a record (`record_audit`), and the admin's listing of it (`GET /api/audit`).

Every read and write of patient data and every login appends one row to `audit_events`,
which PostgreSQL keeps append-only. A handler that cannot write its audit row fails: an
access that is not recorded must not happen.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from tortoise.expressions import Q

from common.app.bodies import read_query
from common.app.logs import current_correlation_id
from common.app.pagination import next_page
from common.app.problems import ProblemError
from common.app.web import correlation_id_key
from common.auth.identity import Caller, caller_key, request_caller
from common.schemas.auth import AuditEventIn, AuditEventView, AuditPage, AuditQuery, Outcome
from common.schemas.text import shown
from results_service.models.accounts import AuditEvent

# The lengths of audit_events' columns (and of AuditEventIn's fields).
_RESOURCE_ID_MAX = 128
_ACTOR_ID_MAX = 64


async def append_audit(event: AuditEventIn) -> int:
    """Store one validated audit record; its id."""
    row = await AuditEvent.create(**event.model_dump())
    return int(row.id)


async def record_audit(
    request: web.Request | None,
    action: str,
    outcome: Outcome,
    *,
    resource_type: str | None = None,
    resource_id: str | None = None,
    caller: Caller | None = None,
    actor_email: str | None = None,
    detail: dict[str, Any] | None = None,
) -> int:
    """Append an audit record for the current request (actor, correlation id and client taken from it).

    For results_service handlers: `await record_audit(request, "instance.read", Outcome.SUCCESS,
    resource_type="instance", resource_id=instance_id)`. `detail` must not hold patient data.
    """
    if caller is None and request is not None:
        caller = request.get(caller_key)
    correlation_id = request.get(correlation_id_key) if request is not None else None
    client = (caller.client if caller else None) or (request.remote if request is not None else None)
    event = AuditEventIn(
        actor_id=(caller.user_id or None) if caller else None,
        actor_email=actor_email or (caller.email if caller else None),
        action=action,
        resource_type=resource_type,
        # A path id from a bad request may be long or hold control characters (a NUL, which PostgreSQL refuses).
        resource_id=shown(resource_id, _RESOURCE_ID_MAX) if resource_id else None,
        outcome=outcome,
        correlation_id=correlation_id or current_correlation_id(),
        client=client,
        detail=detail or {},
    )
    return await append_audit(event)


@contextlib.asynccontextmanager
async def audited(
    request: web.Request, action: str, *, resource_type: str, resource_id: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Audit the block it wraps: success when it ends, failure (with the status) when it raises a problem.

    The block may add `resource_id` (e.g. of what it created) and detail entries to the dict it is given.
    A 404 for someone else's resource is recorded like any other miss: the record is for operators,
    the answer to the caller stays the same.
    """
    record: dict[str, Any] = {}
    try:
        yield record
    except ProblemError as exc:
        outcome = Outcome.DENIED if exc.status in (401, 403) else Outcome.FAILURE
        resource = record.pop("resource_id", resource_id)
        await record_audit(
            request,
            action,
            outcome,
            resource_type=resource_type,
            resource_id=resource,
            detail={**record, "status": exc.status},
        )
        raise
    resource = record.pop("resource_id", resource_id)
    await record_audit(
        request, action, Outcome.SUCCESS, resource_type=resource_type, resource_id=resource, detail=record
    )


def _filters(query: AuditQuery) -> Q:
    conditions = Q()
    if query.actor:
        try:
            conditions &= Q(actor_id=str(uuid.UUID(query.actor)))
        except ValueError:
            by_email = Q(actor_email=query.actor.strip().lower())
            # An actor id longer than its column cannot match (and the ORM refuses to compare it): e-mail only.
            conditions &= (by_email | Q(actor_id=query.actor)) if len(query.actor) <= _ACTOR_ID_MAX else by_email
    if query.action:
        conditions &= Q(action__startswith=query.action) if query.action.endswith(".") else Q(action=query.action)
    if query.resource_type:
        conditions &= Q(resource_type=query.resource_type)
    if query.resource_id:
        conditions &= Q(resource_id=query.resource_id)
    if query.outcome:
        conditions &= Q(outcome=query.outcome.value)
    if query.since:
        conditions &= Q(at__gte=query.since)
    if query.until:
        conditions &= Q(at__lt=query.until)
    return conditions


async def list_audit(query: AuditQuery) -> tuple[list[AuditEventView], int]:
    """The page of records matching the filters, newest first, and how many match in total."""
    selected = AuditEvent.filter(_filters(query))
    total = await selected.count()
    rows = await selected.order_by("-id").offset(query.offset).limit(query.limit)
    items = [
        AuditEventView.model_validate(
            {field: getattr(row, field) for field in (*AuditEventIn.model_fields, "id", "at")}
        )
        for row in rows
    ]
    return items, total


async def handle_list_audit(request: web.Request) -> web.Response:
    """GET /api/audit (admins): filter by actor, action, resource, outcome and time range; paginated."""
    caller = request_caller(request)
    caller.require_admin()
    query = read_query(request, AuditQuery)
    items, total = await list_audit(query)
    next_link = next_page(request.rel_url, limit=query.limit, offset=query.offset, shown=len(items), total=total)
    await record_audit(request, "audit.read", Outcome.SUCCESS, resource_type="audit", detail={"count": len(items)})
    page = AuditPage(items=items, total=total, limit=query.limit, offset=query.offset, next=next_link)
    return web.json_response(text=page.model_dump_json())
