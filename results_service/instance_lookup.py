"""`POST /api/instances/lookup`: the caller's own instances among a list of SHA-256 digests.

One indexed query (the unique (owner, sha256) of `instances`), scoped to the caller's user id whatever
the role: the uploader asks what *it* holds, so an admin is answered about their own files too.
Audited as `instance.lookup` with the counts only (digests of patient files stay out of the trail).
"""

from __future__ import annotations

from aiohttp import web

from common.app.bodies import read_model
from common.auth.identity import request_caller
from common.schemas.lookup import LOOKUP_MAX_BYTES, InstanceLookup, InstanceLookupAnswer, KnownInstance
from results_service.audit import audited
from results_service.models.pipeline import Instance


async def lookup_instances(owner: str, digests: list[str]) -> list[KnownInstance]:
    """The owner's instances of `digests`, in the order of `digests`."""
    rows = await Instance.filter(owner=owner, sha256__in=digests).values("sha256", "id", "status", "upload_id")
    by_digest = {row["sha256"]: row for row in rows}
    return [
        KnownInstance(
            sha256=digest,
            instance_id=row["id"],
            status=row["status"],
            upload_id=row["upload_id"],
        )
        for digest in digests
        if (row := by_digest.get(digest)) is not None
    ]


async def handle_lookup(request: web.Request) -> web.Response:
    """POST /api/instances/lookup {"sha256": [...]}: 200 {"known": [...]}, the caller's instances of those digests."""
    async with audited(request, "instance.lookup", resource_type="instance") as record:
        lookup = await read_model(request, InstanceLookup, max_bytes=LOOKUP_MAX_BYTES)
        known = await lookup_instances(request_caller(request).user_id, lookup.sha256)
        record.update(asked=len(lookup.sha256), known=len(known))
    answer = InstanceLookupAnswer(known=known)
    return web.Response(body=answer.model_dump_json().encode(), content_type="application/json")
