"""Login, logout, password changes, accounts and the audit trail as OpenAPI operations (served by the gateway;
accounts and audit answered by results_service), and the bearer-token replies every protected operation shares."""

from __future__ import annotations

from common.app.openapi import Operation, Param, Reply, json_reply, query_params
from common.schemas.auth import (
    AuditPage,
    AuditQuery,
    LoginRequest,
    PasswordChange,
    PasswordReset,
    PasswordResetAnswer,
    TokenResponse,
    UserCreate,
    UserList,
    UserPatch,
    UserView,
)
from common.schemas.credentials import PASSWORD_CHANGE_REQUIRED

LOGIN_PATH = "/api/auth/login"
PASSWORD_PATH = "/api/auth/password"  # noqa: S105 (a path)
AUTH_TAG = "auth"
USERS_TAG = "users"
AUDIT_TAG = "audit"

_MUST_CHANGE = f"the account must change its password first (`{PASSWORD_CHANGE_REQUIRED}`)"
UNAUTHORIZED = {
    401: Reply("No valid bearer token (missing, expired, forged, logged out, or the account is disabled)."),
    # Every protected operation but the password change itself, after an admin reset the account's password.
    403: Reply(f"The token is good, but {_MUST_CHANGE}."),
}
RATE_LIMITED = {429: Reply("Too many requests from this user; `Retry-After` says when to try again.")}
ADMINS_ONLY = {403: Reply(f"The caller is not an admin, or {_MUST_CHANGE}.")}
_BAD_BODY = {
    400: Reply("The body is not valid JSON."),
    413: Reply("The body is too large."),
    415: Reply("The body is not `application/json`."),
    422: Reply("The body does not fit the schema; `errors` names every field."),
}
_USER_ID = Param("user_id", "path", {"type": "string", "format": "uuid"}, "The account's id.", required=True)


def auth_operations() -> list[Operation]:
    """`/api/auth/login` and `/api/auth/logout` (answered by the gateway, which holds the token caches)."""
    return [
        Operation(
            "POST",
            LOGIN_PATH,
            "Log in with email and password; answers a bearer token and when it expires",
            AUTH_TAG,
            {
                200: json_reply("Logged in.", TokenResponse),
                **_BAD_BODY,
                401: Reply("Wrong email or password, or a disabled account (one answer for all)."),
                429: Reply("Too many login attempts from this address; `Retry-After` says when to try again."),
            },
            request_body=(LoginRequest,),
            description="Every attempt, successful or not, is audited.",
            public=True,
        ),
        Operation(
            "POST",
            "/api/auth/logout",
            "Revoke the token this request carries",
            AUTH_TAG,
            {204: json_reply("Logged out: the token is refused from now on."), **UNAUTHORIZED, **RATE_LIMITED},
        ),
        Operation(
            "POST",
            PASSWORD_PATH,
            "Change your own password (the current one and the new one)",
            AUTH_TAG,
            {
                204: json_reply("Changed: the new password logs in, and every other token of the account is revoked."),
                **_BAD_BODY,
                401: UNAUTHORIZED[401],
                403: Reply("The current password is not correct (the attempt is audited)."),
                **RATE_LIMITED,
            },
            request_body=(PasswordChange,),
            description="The token this request carries stays valid (with full access, if it was limited to this "
            "operation by an admin's reset); the account's other tokens are revoked. Successes and wrong current "
            "passwords are audited (`auth.password_change`).",
        ),
    ]


def account_operations() -> list[Operation]:
    """`/api/users`, `/api/users/{user_id}` and `/api/audit` (answered by results_service)."""
    return [
        Operation(
            "POST",
            "/api/users",
            "Create an account (admins)",
            USERS_TAG,
            {
                201: json_reply("Created.", UserView),
                **_BAD_BODY,
                **UNAUTHORIZED,
                **ADMINS_ONLY,
                409: Reply("An account with this email exists."),
                **RATE_LIMITED,
            },
            request_body=(UserCreate,),
        ),
        Operation(
            "GET",
            "/api/users",
            "List every account, oldest first (admins)",
            USERS_TAG,
            {200: json_reply("The accounts.", UserList), **UNAUTHORIZED, **ADMINS_ONLY, **RATE_LIMITED},
        ),
        Operation(
            "PATCH",
            "/api/users/{user_id}",
            "Change an account's role and/or disable or re-enable it (admins)",
            USERS_TAG,
            {
                200: json_reply("The account after the change.", UserView),
                **_BAD_BODY,
                **UNAUTHORIZED,
                **ADMINS_ONLY,
                404: Reply("No account has this id."),
                409: Reply("The change would leave no active admin."),
                **RATE_LIMITED,
            },
            request_body=(UserPatch,),
            params=(_USER_ID,),
        ),
        Operation(
            "POST",
            "/api/users/{user_id}/password-reset",
            "Reset an account's password (admins): the user must change it at their next login",
            USERS_TAG,
            {
                200: json_reply(
                    "Reset; the generated temporary password, if any, is shown only here.", PasswordResetAnswer
                ),
                **_BAD_BODY,
                **UNAUTHORIZED,
                **ADMINS_ONLY,
                404: Reply("No account has this id."),
                **RATE_LIMITED,
            },
            request_body=(PasswordReset,),
            params=(_USER_ID,),
            description="Sets the given temporary password, or generates one when `password` is absent. The "
            "account's tokens are revoked; its next login answers a token good only for `POST /api/auth/password` "
            "until the user chooses a new password. Audited (`user.password_reset`).",
        ),
        Operation(
            "GET",
            "/api/audit",
            "Read the audit trail, newest first, filtered (admins; the read is itself audited)",
            AUDIT_TAG,
            {
                200: json_reply("One page.", AuditPage),
                **UNAUTHORIZED,
                **ADMINS_ONLY,
                422: Reply("A query parameter is invalid or unknown."),
                **RATE_LIMITED,
            },
            params=query_params(AuditQuery),
        ),
    ]
