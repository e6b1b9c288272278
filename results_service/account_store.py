"""Accounts in PostgreSQL: create, list, change, authenticate, change and reset passwords, revoke and introspect
tokens."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from common.app.problems import Conflict, Forbidden, NotFound, Unauthorized
from common.auth.tokens import Role
from common.schemas.auth import PasswordChangeRelay, TokenIntrospection, UserCreate, UserPatch, UserView
from common.schemas.credentials import PASSWORD_CHANGE_REQUIRED
from results_service import sessions
from results_service.models.accounts import RevokedToken, User
from results_service.passwords import Passwords

TEMPORARY_PASSWORD_BYTES = 15
"""A generated temporary password: 15 random bytes, 20 URL-safe characters (over the 12-character minimum)."""


class UserNotFound(NotFound):
    """No account with this id (or the id is not a UUID at all)."""

    def __init__(self, user_id: str) -> None:
        super().__init__(f"No user with id {user_id!r}.")


class EmailTaken(Conflict):
    def __init__(self) -> None:
        super().__init__("An account with this email already exists.")


class LastAdmin(Conflict):
    def __init__(self) -> None:
        super().__init__("This is the last active admin; make another admin first.")


class WrongPassword(Forbidden):
    """The current password given with a change is not the account's."""

    def __init__(self, user: User) -> None:
        super().__init__("The current password is not correct.")
        self.user = user


class TokenNoLongerValid(Unauthorized):
    """The token a change came with was revoked, or its account is gone or disabled, since the gateway checked it."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"The access token is not valid: {reason}.")


def view(user: User) -> UserView:
    """The public view of an account."""
    return UserView(
        id=str(user.id),
        email=user.email,
        role=Role(user.role),
        disabled=user.disabled,
        must_change_password=user.must_change_password,
        created_at=user.created_at,
    )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def create_user(body: UserCreate, passwords: Passwords) -> User:
    """A new account; 409 if the (case-insensitive) email is taken."""
    password_hash = await passwords.hash(body.password.get_secret_value())
    try:
        return await User.create(email=body.email, password_hash=password_hash, role=body.role.value)
    except IntegrityError as exc:
        raise EmailTaken() from exc


async def list_users() -> list[User]:
    """Every account, oldest first."""
    return await User.all().order_by("created_at", "email")


async def get_user(user_id: str) -> User:
    """The account with this id, or 404."""
    key = _uuid(user_id)
    user = await User.get_or_none(id=key) if key is not None else None
    if user is None:
        raise UserNotFound(user_id)
    return user


async def find_by_email(email: str) -> User | None:
    """The account with this email (any case), if any."""
    return await User.get_or_none(email=email.strip().lower())


async def patch_user(user_id: str, patch: UserPatch) -> tuple[User, dict[str, object]]:
    """Change role and/or disabled; never leaves the system without an active admin. Returns what changed."""
    async with in_transaction():
        key = _uuid(user_id)
        user = await User.select_for_update().get_or_none(id=key) if key is not None else None
        if user is None:
            raise UserNotFound(user_id)
        changes: dict[str, object] = {}
        if patch.role is not None and patch.role.value != user.role:
            changes["role"] = patch.role.value
        if patch.disabled is not None and patch.disabled != user.disabled:
            changes["disabled"] = patch.disabled
        loses_admin = user.role == Role.ADMIN.value and not user.disabled
        loses_admin = loses_admin and (changes.get("role") == Role.USER.value or changes.get("disabled") is True)
        if loses_admin:
            # Lock every active admin row so two concurrent demotions cannot both pass this check.
            admins = await User.select_for_update().filter(role=Role.ADMIN.value, disabled=False)
            if len(admins) <= 1:
                raise LastAdmin()
        if changes:
            await User.filter(id=user.id).update(**changes)
            await user.refresh_from_db()
        return user, changes


async def authenticate(email: str, password: str, passwords: Passwords) -> tuple[User | None, str | None]:
    """(user, None) on success, else (user-or-None, reason); same work whether or not the email exists."""
    user = await find_by_email(email)
    ok = await passwords.verify(user.password_hash if user else None, password)
    if user is None:
        return None, "unknown_email"
    if not ok:
        return user, "bad_password"
    if user.disabled:
        return user, "disabled"
    if passwords.needs_rehash(user.password_hash):
        await User.filter(id=user.id).update(password_hash=await passwords.hash(password))
    return user, None


async def change_password(change: PasswordChangeRelay, passwords: Passwords) -> tuple[User, list[str]]:
    """Set the caller's new password after checking their token and current password; clear the must-change flag
    and revoke every other token of the account. The account and the ids revoked; WrongPassword (403) otherwise."""
    if await RevokedToken.exists(jti=change.jti):
        raise TokenNoLongerValid("the token has been revoked")
    key = _uuid(change.sub)
    user = await User.get_or_none(id=key) if key is not None else None
    if user is None:
        raise TokenNoLongerValid("the account no longer exists")
    if user.disabled:
        raise TokenNoLongerValid("the account is disabled")
    if not await passwords.verify(user.password_hash, change.current_password.get_secret_value()):
        raise WrongPassword(user)
    password_hash = await passwords.hash(change.new_password.get_secret_value())
    async with in_transaction():
        await User.filter(id=user.id).update(
            password_hash=password_hash, must_change_password=False, password_changed_at=datetime.now(UTC)
        )
        revoked = await sessions.revoke_all(user.id, keep=change.jti)
    await user.refresh_from_db()
    return user, revoked


async def reset_password(user_id: str, password: str | None, passwords: Passwords) -> tuple[User, str | None, int]:
    """An admin's reset: set `password` (or a generated one), require a change at next login, revoke every token.

    The account, the generated password (None when one was given) and how many tokens were revoked; 404 if no
    account has this id."""
    generated = None if password is not None else secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)
    password_hash = await passwords.hash(password if password is not None else str(generated))
    async with in_transaction():
        key = _uuid(user_id)
        user = await User.select_for_update().get_or_none(id=key) if key is not None else None
        if user is None:
            raise UserNotFound(user_id)
        await User.filter(id=user.id).update(
            password_hash=password_hash, must_change_password=True, password_changed_at=datetime.now(UTC)
        )
        revoked = await sessions.revoke_all(user.id)
    await user.refresh_from_db()
    return user, generated, len(revoked)


async def revoke_token(jti: str, user_id: str, expires_at: datetime) -> bool:
    """Revoke a token id until its expiry (idempotent); True if it was newly revoked. Purges expired rows."""
    key = _uuid(user_id)
    if key is None:
        raise UserNotFound(user_id)
    now = datetime.now(UTC)
    await RevokedToken.filter(expires_at__lt=now).delete()
    _, created = await RevokedToken.get_or_create(jti=jti, defaults={"user_id": key, "expires_at": expires_at})
    return created


async def introspect(jti: str, sub: str) -> TokenIntrospection:
    """Whether a (signature-checked) token may still be used, with the user's current role."""
    if await RevokedToken.exists(jti=jti):
        return TokenIntrospection(active=False, reason="the token has been revoked (logged out)")
    key = _uuid(sub)
    user = await User.get_or_none(id=key) if key is not None else None
    if user is None:
        return TokenIntrospection(active=False, reason="the account no longer exists")
    if user.disabled:
        return TokenIntrospection(active=False, reason="the account is disabled")
    if user.must_change_password:
        # Not active for anything but the change itself, which checks the token on its own (change_password).
        return TokenIntrospection(
            active=False,
            user_id=str(user.id),
            email=user.email,
            role=Role(user.role),
            reason=PASSWORD_CHANGE_REQUIRED,
            must_change_password=True,
        )
    return TokenIntrospection(active=True, user_id=str(user.id), email=user.email, role=Role(user.role))
