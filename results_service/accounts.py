"""HTTP handlers of login/logout/introspection, password changes and resets, and account management.

`/internal/...` routes are for the gateway and operators' tools (the gateway never proxies them);
`/api/users` is the admins' API behind the gateway, which has checked the user's token and vouches
for them in its service token. Every request carries a service token (`common.auth.service_guard`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from aiohttp import web
from pydantic import BaseModel

from common.app.bodies import read_model
from common.app.logs import get_logger
from common.app.problems import Unauthorized
from common.auth.identity import Caller, request_caller
from common.auth.service_guard import service_claims_key
from common.auth.tokens import Role, issue_token
from common.schemas.auth import (
    IntrospectRequest,
    LoginRequest,
    LogoutRequest,
    Outcome,
    PasswordChanged,
    PasswordChangeRelay,
    PasswordReset,
    PasswordResetAnswer,
    TokenResponse,
    UserCreate,
    UserList,
    UserPatch,
)
from results_service import account_store, sessions
from results_service.audit import record_audit
from results_service.keys import passwords_key, settings_key
from results_service.passwords import Passwords

log = get_logger(__name__)

OPERATOR = "operator"


def _json(model: BaseModel, *, status: int = 200) -> web.Response:
    return web.Response(status=status, body=model.model_dump_json().encode(), content_type="application/json")


def _max_body(request: web.Request) -> int:
    return request.app[settings_key].max_auth_body


def _manager(request: web.Request) -> Caller:
    """Who manages accounts: an admin through the gateway, or an operator's tool on the internal API (its
    service token is the proof)."""
    if request.path.startswith("/internal/"):
        return Caller(user_id=OPERATOR, role=Role.ADMIN, client=request.remote)
    caller = request_caller(request)
    caller.require_admin()
    return caller


async def handle_login(request: web.Request) -> web.Response:
    """POST /internal/auth/login (the gateway's /api/auth/login): a bearer token for a good email and password.

    Every attempt is audited; a wrong password, an unknown email and a disabled account all
    answer the same 401 after the same amount of work.
    """
    body = await read_model(request, LoginRequest, max_bytes=_max_body(request))
    settings = request.app[settings_key]
    user, reason = await account_store.authenticate(
        body.email, body.password.get_secret_value(), request.app[passwords_key]
    )
    client = request[service_claims_key].client  # the address the gateway relays the login for
    if user is None or reason is not None:
        actor = Caller(user_id=str(user.id), client=client) if user else Caller(user_id="", client=client)
        await record_audit(
            request,
            "auth.login",
            Outcome.FAILURE,
            caller=actor,
            actor_email=body.email[:320],
            detail={"reason": reason},
        )
        log.info("login_failed", reason=reason)
        raise Unauthorized("Invalid email or password.", error=None)
    token, claims = issue_token(
        settings.auth_secret.get_secret_value(),
        user_id=str(user.id),
        email=user.email,
        role=Role(user.role),
        ttl_seconds=settings.token_ttl_seconds,
        clock=time.time,
    )
    await sessions.record_issued(claims)
    actor = Caller(user_id=str(user.id), role=Role(user.role), email=user.email, client=client)
    must_change = user.must_change_password
    await record_audit(
        request, "auth.login", Outcome.SUCCESS, caller=actor, resource_type="user", resource_id=actor.user_id,
        detail={"must_change_password": True} if must_change else None,
    )  # fmt: skip
    log.info("login_succeeded", user_id=actor.user_id, must_change_password=must_change)
    return _json(TokenResponse(access_token=token, expires_at=claims.exp, must_change_password=must_change))


async def handle_logout(request: web.Request) -> web.Response:
    """POST /internal/auth/logout: revoke the caller's token (the gateway sends its verified jti)."""
    body = await read_model(request, LogoutRequest, max_bytes=_max_body(request))
    await account_store.revoke_token(body.jti, body.sub, body.expires_at)
    await record_audit(request, "auth.logout", Outcome.SUCCESS, resource_type="user", resource_id=body.sub)
    return web.Response(status=204)


async def handle_introspect(request: web.Request) -> web.Response:
    """POST /internal/auth/introspect: is a signature-checked token still usable (not revoked, user enabled)?"""
    body = await read_model(request, IntrospectRequest, max_bytes=_max_body(request))
    return _json(await account_store.introspect(body.jti, body.sub))


async def handle_create_user(request: web.Request) -> web.Response:
    """POST /api/users (admins) or /internal/users (operators): a new account; 409 if the email is taken."""
    manager = _manager(request)
    body = await read_model(request, UserCreate, max_bytes=_max_body(request))
    user = await account_store.create_user(body, request.app[passwords_key])
    await record_audit(
        request, "user.create", Outcome.SUCCESS, caller=manager, resource_type="user", resource_id=str(user.id),
        detail={"role": user.role},
    )  # fmt: skip
    return _json(account_store.view(user), status=201)


async def handle_list_users(request: web.Request) -> web.Response:
    """GET /api/users (admins) or /internal/users (operators): every account."""
    manager = _manager(request)
    users = [account_store.view(user) for user in await account_store.list_users()]
    await record_audit(request, "user.list", Outcome.SUCCESS, caller=manager, resource_type="user")
    return _json(UserList(items=users, total=len(users)))


async def handle_patch_user(request: web.Request) -> web.Response:
    """PATCH /api/users/{id} (admins) or /internal/users/{id} (operators): change role and/or disabled."""
    manager = _manager(request)
    body = await read_model(request, UserPatch, max_bytes=_max_body(request))
    user, changes = await account_store.patch_user(request.match_info["user_id"], body)
    await record_audit(
        request, "user.update", Outcome.SUCCESS, caller=manager, resource_type="user", resource_id=str(user.id),
        detail=changes,
    )  # fmt: skip
    return _json(account_store.view(user))


async def handle_change_password(request: web.Request) -> web.Response:
    """POST /internal/auth/password (the gateway's /api/auth/password): the caller's new password.

    The gateway has checked the token's signature and expiry and relays its id and subject; revocation, the
    account and the current password are checked here (introspection would refuse a token that must change its
    password, and this is the one call such a token may make). Wrong current passwords and successes are audited.
    """
    body = await read_model(request, PasswordChangeRelay, max_bytes=_max_body(request))
    client = request[service_claims_key].client
    try:
        user, revoked = await account_store.change_password(body, request.app[passwords_key])
    except account_store.WrongPassword as exc:
        actor = Caller(user_id=str(exc.user.id), role=Role(exc.user.role), email=exc.user.email, client=client)
        await record_audit(
            request, "auth.password_change", Outcome.FAILURE, caller=actor, resource_type="user",
            resource_id=actor.user_id, detail={"reason": "bad_password"},
        )  # fmt: skip
        log.info("password_change_refused", user_id=actor.user_id, reason="bad_password")
        raise
    actor = Caller(user_id=str(user.id), role=Role(user.role), email=user.email, client=client)
    await record_audit(
        request, "auth.password_change", Outcome.SUCCESS, caller=actor, resource_type="user",
        resource_id=actor.user_id, detail={"tokens_revoked": len(revoked)},
    )  # fmt: skip
    log.info("password_changed", user_id=actor.user_id, tokens_revoked=len(revoked))
    return _json(PasswordChanged(revoked=revoked))


async def handle_reset_password(request: web.Request) -> web.Response:
    """POST /api/users/{id}/password-reset (admins) or /internal/users/{id}/password-reset (operators): a temporary
    password (given, or generated and answered once) that the user must change at their next login."""
    manager = _manager(request)
    body = await read_model(request, PasswordReset, max_bytes=_max_body(request))
    given = body.password.get_secret_value() if body.password is not None else None
    user, generated, revoked = await account_store.reset_password(
        request.match_info["user_id"], given, request.app[passwords_key]
    )
    await record_audit(
        request, "user.password_reset", Outcome.SUCCESS, caller=manager, resource_type="user",
        resource_id=str(user.id), detail={"generated": generated is not None, "tokens_revoked": revoked},
    )  # fmt: skip
    log.info("password_reset", user_id=str(user.id), generated=generated is not None, tokens_revoked=revoked)
    return _json(PasswordResetAnswer(user=account_store.view(user), temporary_password=generated))


async def _passwords_ctx(app: web.Application) -> AsyncIterator[None]:
    app[passwords_key] = Passwords(app[settings_key])
    yield


def setup_accounts(app: web.Application) -> None:
    """Register the internal accounts routes and the password hasher's start-up (the public `/api` ones are
    declared by their operations in `routes.setup_routes`)."""
    app.cleanup_ctx.append(_passwords_ctx)
    router = app.router
    router.add_post("/internal/auth/login", handle_login)
    router.add_post("/internal/auth/logout", handle_logout)
    router.add_post("/internal/auth/introspect", handle_introspect)
    router.add_post("/internal/auth/password", handle_change_password)
    # Operators' tools (`dicomflow users`) manage accounts with a service token and no user token.
    router.add_post("/internal/users", handle_create_user)
    router.add_get("/internal/users", handle_list_users)
    router.add_patch("/internal/users/{user_id}", handle_patch_user)
    router.add_post("/internal/users/{user_id}/password-reset", handle_reset_password)
