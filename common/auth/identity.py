"""Who is calling: the user a request acts for, as the gateway authenticated them.

The gateway verifies the user's bearer token and puts the :class:`Caller` on the request
(`caller_key`). Services behind it never read identity from plain headers: the gateway carries
the caller inside the signed service token of each request it forwards
(`common.auth.service_tokens`), and their service-token middleware (`common.auth.service_guard`)
puts the caller it vouches for on the request under the same key. Handlers read it with
:func:`request_caller` and scope every query with :meth:`Caller.owner_filter`: a user sees their
own rows, an admin all.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from common.app.problems import Forbidden, Unauthorized
from common.auth.tokens import Role


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user of a request (and the client address they called from, for the audit trail)."""

    user_id: str
    role: Role = Role.USER
    email: str | None = None
    client: str | None = None

    @property
    def is_admin(self) -> bool:
        """Admins see and manage every resource."""
        return self.role is Role.ADMIN

    def owner_filter(self, field: str = "owner") -> dict[str, str]:
        """Keyword filter for a Tortoise query: `{field: user_id}` for users, nothing for admins.

        `Instance.filter(id=..., **caller.owner_filter())` answers 404 for another user's row,
        exactly as for a missing one, and lists are filtered in the query, not afterwards.
        """
        return {} if self.is_admin else {field: self.user_id}

    def require_admin(self) -> None:
        """403 unless the caller is an admin."""
        if not self.is_admin:
            raise Forbidden("This operation needs the admin role.")


caller_key = web.RequestKey("caller", Caller)
"""Set by the gateway's auth middleware, and by the service-token middleware of the services behind it."""


def request_caller(request: web.Request) -> Caller:
    """The user this request acts for; 401 when no verified identity came with it (there is no default user)."""
    if caller_key not in request:
        raise Unauthorized("This request carries no authenticated user.", error=None)
    return request[caller_key]
