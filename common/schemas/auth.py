"""HTTP bodies of login/logout, password changes, user management and the audit trail (results_service, via the
gateway).

Passwords only ever travel inside requests (`LoginRequest`, `UserCreate`, `PasswordChange`, `PasswordReset`) and
once in the answer to an admin's reset that generated one; never in a log line. The rules of e-mails and
passwords are `common.schemas.credentials`'. Audit details carry no patient data (names, ids, dates of birth are
refused by the model).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

import pydantic_core
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator

from common.app.pagination import Limit, Offset
from common.auth.tokens import Role
from common.schemas.credentials import PASSWORD_MAX, Email, LoginEmail, NewPassword
from common.schemas.moments import Moment
from common.schemas.text import PRINTABLE

ACTION_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
# Keys an audit detail may never hold: patient data and credentials.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"patientname", "patientid", "patientbirthdate", "password", "token", "accesstoken", "authorization"}
)


class Outcome(StrEnum):
    """How an audited action ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class LoginRequest(BaseModel):
    """`POST /api/auth/login`."""

    model_config = ConfigDict(extra="forbid")

    email: LoginEmail
    password: SecretStr = Field(min_length=1, max_length=PASSWORD_MAX)


class TokenResponse(BaseModel):
    """A bearer token and when it expires."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth 2 token type, not a secret)
    expires_at: datetime
    must_change_password: bool = Field(
        default=False,
        description="The account must change its password (after an admin's reset): until it does, this token is "
        "good only for `POST /api/auth/password`.",
    )


class UserCreate(BaseModel):
    """`POST /api/users` (admins) and `dicomflow users create` (operators)."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    password: NewPassword
    role: Role = Role.USER


class UserPatch(BaseModel):
    """`PATCH /api/users/{id}`: change the role and/or disable or re-enable the account."""

    model_config = ConfigDict(extra="forbid")

    role: Role | None = None
    disabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> UserPatch:
        if self.role is None and self.disabled is None:
            raise ValueError("give `role` and/or `disabled`")
        return self


class UserView(BaseModel):
    """An account as admins see it (never the password hash)."""

    id: str
    email: str
    role: Role
    disabled: bool
    must_change_password: bool = False
    created_at: datetime


class UserList(BaseModel):
    """Every account, oldest first."""

    items: list[UserView]
    total: int


class TokenIntrospection(BaseModel):
    """results_service's answer to the gateway: is this token still good, and who is it now?"""

    active: bool
    user_id: str | None = None
    email: str | None = None
    role: Role | None = None
    reason: str | None = None
    must_change_password: bool = False
    """Set (with `active` false) while the account must change its password: the gateway answers 403 then."""


class IntrospectRequest(BaseModel):
    """`POST /internal/auth/introspect`: the token's id and subject (already signature-checked by the gateway)."""

    model_config = ConfigDict(extra="forbid")

    jti: str = Field(min_length=1, max_length=64)
    sub: str = Field(min_length=1, max_length=64)


class LogoutRequest(BaseModel):
    """`POST /internal/auth/logout`: revoke this token id until it would have expired anyway."""

    model_config = ConfigDict(extra="forbid")

    jti: str = Field(min_length=1, max_length=64)
    sub: str = Field(min_length=1, max_length=64)
    expires_at: datetime


class PasswordChange(BaseModel):
    """`POST /api/auth/password`: the caller's current password and the new one."""

    model_config = ConfigDict(extra="forbid")

    current_password: SecretStr = Field(min_length=1, max_length=PASSWORD_MAX)
    new_password: NewPassword

    @model_validator(mode="after")
    def _differs(self) -> PasswordChange:
        if self.current_password.get_secret_value() == self.new_password.get_secret_value():
            raise ValueError("The new password must differ from the current one.")
        return self


class PasswordChangeRelay(PasswordChange):
    """`POST /internal/auth/password`: the gateway relays a change with the id and subject of the (signature-checked)
    token it came with; results_service checks the token is not revoked and the current password."""

    jti: str = Field(min_length=1, max_length=64)
    sub: str = Field(min_length=1, max_length=64)

    def to_json(self) -> bytes:
        """The body as sent (pydantic would mask the passwords)."""
        return pydantic_core.to_json(
            {
                "jti": self.jti,
                "sub": self.sub,
                "current_password": self.current_password.get_secret_value(),
                "new_password": self.new_password.get_secret_value(),
            }
        )


class PasswordChanged(BaseModel):
    """results_service's answer to a relayed change: the token ids it revoked (the gateway drops their cached
    answers, so this replica refuses them at once)."""

    revoked: list[str]


class PasswordReset(BaseModel):
    """`POST /api/users/{id}/password-reset` (admins): the temporary password, or none to have one generated."""

    model_config = ConfigDict(extra="forbid")

    password: NewPassword | None = None


class PasswordResetAnswer(BaseModel):
    """The account after an admin's reset and, when it was generated, the temporary password (shown only here)."""

    user: UserView
    temporary_password: str | None = Field(
        default=None, description="The generated temporary password (absent when the admin chose it)."
    )


def _clean_detail(detail: dict[str, Any]) -> dict[str, Any]:
    bad = sorted(key for key in detail if key.lower().replace("_", "").replace("-", "") in FORBIDDEN_DETAIL_KEYS)
    if bad:
        raise ValueError(f"audit details must not hold patient data or credentials: {', '.join(bad)}")
    return detail


class AuditEventIn(BaseModel):
    """One audit record as results_service appends it (`results_service.audit.append_audit`)."""

    model_config = ConfigDict(extra="forbid")

    actor_id: str | None = Field(default=None, max_length=64, description="User id; null for anonymous.")
    actor_email: str | None = Field(default=None, max_length=320)
    action: str = Field(pattern=ACTION_PATTERN, description="e.g. `auth.login`, `instance.read`.")
    resource_type: str | None = Field(default=None, max_length=64)
    resource_id: str | None = Field(default=None, max_length=128)
    outcome: Outcome
    correlation_id: str | None = Field(default=None, max_length=128)
    client: str | None = Field(default=None, max_length=128, description="Client address as the gateway saw it.")
    detail: Annotated[dict[str, Any], AfterValidator(_clean_detail)] = Field(default_factory=dict)


class AuditEventView(AuditEventIn):
    """A stored audit record."""

    model_config = ConfigDict(extra="ignore")

    id: int
    at: datetime


class AuditQuery(BaseModel):
    """Filters of `GET /api/audit` (all optional, combined with AND), newest first."""

    model_config = ConfigDict(extra="forbid")

    actor: Annotated[str, Field(max_length=320), PRINTABLE] | None = Field(
        default=None, description="Actor user id or email."
    )
    action: Annotated[str, Field(max_length=64), PRINTABLE] | None = Field(
        default=None, description="Exact action, or a prefix ending in `.`."
    )
    resource_type: Annotated[str, Field(max_length=64), PRINTABLE] | None = None
    resource_id: Annotated[str, Field(max_length=128), PRINTABLE] | None = None
    outcome: Outcome | None = None
    since: Moment | None = Field(default=None, description="Inclusive lower bound of `at` (ISO 8601, with offset).")
    until: Moment | None = Field(default=None, description="Exclusive upper bound of `at` (ISO 8601, with offset).")
    limit: Limit = 100
    offset: Offset = 0


class AuditPage(BaseModel):
    """A page of audit records with the total matching the filters."""

    items: list[AuditEventView]
    total: int
    limit: int
    offset: int
    next: str | None
