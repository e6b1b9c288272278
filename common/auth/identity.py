"""Who is calling: the identity headers the gateway sets on every proxied request.

The gateway authenticates the bearer token, strips any client-supplied copy of these headers
and sets them; services behind it (reachable only from inside the deployment) trust them and
scope every query with :meth:`Caller.owner_filter`: a user sees their own rows, an admin all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web

from common.app.problems import Forbidden
from common.auth.tokens import Role

USER_HEADER = "X-Authenticated-User"
ROLE_HEADER = "X-Authenticated-Role"
EMAIL_HEADER = "X-Authenticated-Email"
CLIENT_HEADER = "X-Client-Address"
IDENTITY_HEADERS = (USER_HEADER, ROLE_HEADER, EMAIL_HEADER, CLIENT_HEADER)
# Owner of requests that reached a service without the gateway (operators on the internal network).
LOCAL_OWNER = "local"


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated user of a request."""

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

    def headers(self) -> dict[str, str]:
        """The headers that carry this identity to the next service."""
        result = {USER_HEADER: self.user_id, ROLE_HEADER: self.role.value}
        if self.email:
            result[EMAIL_HEADER] = self.email
        if self.client:
            result[CLIENT_HEADER] = self.client
        return result


caller_key = web.RequestKey("caller", Caller)
"""Set by the gateway's auth middleware on every authenticated request."""


def caller_from_headers(headers: Mapping[str, str]) -> Caller:
    """The caller the gateway vouched for (`local`, role user, when the headers are absent)."""
    role_value = headers.get(ROLE_HEADER, Role.USER.value)
    role = Role.ADMIN if role_value == Role.ADMIN.value else Role.USER
    return Caller(
        user_id=headers.get(USER_HEADER) or LOCAL_OWNER,
        role=role,
        email=headers.get(EMAIL_HEADER) or None,
        client=headers.get(CLIENT_HEADER) or None,
    )
