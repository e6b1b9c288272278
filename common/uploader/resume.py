"""Resume: ask the server which of the files' SHA-256 it holds already for this user, and send only the rest.

A re-run after a crash, a killed client or a lost connection finds the files that got through and skips them
(`POST /api/instances/lookup`, at most `LOOKUP_MAX_DIGESTS` per call). A file that got through only on the
server's side (the answer was lost) is found the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import ValidationError

from common.schemas.lookup import LOOKUP_MAX_DIGESTS, InstanceLookupAnswer, KnownInstance
from common.uploader.client import ServerClient, ServerError, problem_detail


async def known_instances(client: ServerClient, digests: Sequence[str]) -> dict[str, KnownInstance]:
    """The caller's instances holding any of `digests`, by digest (lower-case hex)."""
    unique = list(dict.fromkeys(d.lower() for d in digests))
    known: dict[str, KnownInstance] = {}
    for start in range(0, len(unique), LOOKUP_MAX_DIGESTS):
        batch = unique[start : start + LOOKUP_MAX_DIGESTS]
        reply = await client.call("POST", "/api/instances/lookup", json_body={"sha256": batch})
        if reply.status != 200:
            raise ServerError(f"the resume lookup failed: {problem_detail(reply)}")
        try:
            answer = InstanceLookupAnswer.model_validate_json(reply.body)
        except ValidationError as exc:
            raise ServerError(f"the resume lookup's answer is not readable: {exc.errors()[0]['msg']}") from None
        known.update((item.sha256.lower(), item) for item in answer.known)
    return known
