"""HTTP bodies of login/logout, user management and the audit trail (results_service, via the gateway).

Passwords only ever travel inside `LoginRequest`/`UserCreate` (never in a response or a log line);
audit details carry no patient data (names, ids, dates of birth are refused by the model).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from common.app.pagination import Limit, Offset
from common.auth.tokens import Role
from common.schemas.moments import Moment
from common.schemas.text import PRINTABLE

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]{1,255}$"
ACTION_PATTERN = r"^[a-z][a-z0-9_.-]{0,63}$"
PASSWORD_MIN = 12
PASSWORD_MAX = 1024
# Keys an audit detail may never hold: patient data and credentials.
FORBIDDEN_DETAIL_KEYS = frozenset(
    {"patientname", "patientid", "patientbirthdate", "password", "token", "accesstoken", "authorization"}
)


def _normalise_email(value: str) -> str:
    return value.strip().lower()


Email = Annotated[str, Field(min_length=3, max_length=320, pattern=EMAIL_PATTERN), AfterValidator(_normalise_email)]


class Outcome(StrEnum):
    """How an audited action ended."""

    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


class LoginRequest(BaseModel):
    """`POST /api/auth/login`."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=1, max_length=320)
    password: SecretStr = Field(min_length=1, max_length=PASSWORD_MAX)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return _normalise_email(value)


class TokenResponse(BaseModel):
    """A bearer token and when it expires."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth 2 token type, not a secret)
    expires_at: datetime


class UserCreate(BaseModel):
    """`POST /api/users` (admins) and `dicomflow users create` (operators)."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    password: SecretStr = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
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
