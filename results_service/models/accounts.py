"""Accounts, issued and revoked tokens and the append-only audit trail (Tortoise app `accounts`).

The audit table's append-only rule is enforced by PostgreSQL (a trigger created by the
migration rejects UPDATE, DELETE and TRUNCATE), so not even a bug here can rewrite history.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class User(Model):
    """A person who logs in. `email` is stored lower-cased, so uniqueness is case-insensitive.

    `must_change_password` is set by an admin's reset: until the user chooses a new password, their tokens are
    good only for changing it.
    """

    id = fields.UUIDField(primary_key=True)
    email = fields.CharField(max_length=320, unique=True)
    password_hash = fields.CharField(max_length=255)
    role = fields.CharField(max_length=16, default="user")
    disabled = fields.BooleanField(default=False)
    must_change_password = fields.BooleanField(default=False)
    password_changed_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "users"
        ordering = ("created_at",)

    def __str__(self) -> str:
        return self.email


class RevokedToken(Model):
    """A logged-out token id, kept until the token would have expired anyway."""

    jti = fields.CharField(max_length=64, primary_key=True)
    user_id = fields.UUIDField()
    expires_at = fields.DatetimeField(db_index=True)
    revoked_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "revoked_tokens"


class IssuedToken(Model):
    """A token issued at login, kept until it expires, so that a password change or reset can revoke every
    token of the account (each one becomes a `RevokedToken`, the one rule introspection checks)."""

    jti = fields.CharField(max_length=64, primary_key=True)
    user_id = fields.UUIDField(db_index=True)
    expires_at = fields.DatetimeField(db_index=True)
    issued_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "issued_tokens"


class AuditEvent(Model):
    """Who did what to which resource, when, and how it ended. Never updated, never deleted."""

    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField(auto_now_add=True, db_index=True)
    actor_id = fields.CharField(max_length=64, null=True, db_index=True)
    actor_email = fields.CharField(max_length=320, null=True)
    action = fields.CharField(max_length=64, db_index=True)
    resource_type = fields.CharField(max_length=64, null=True)
    resource_id = fields.CharField(max_length=128, null=True)
    outcome = fields.CharField(max_length=16)
    correlation_id = fields.CharField(max_length=128, null=True)
    client = fields.CharField(max_length=128, null=True)
    detail = fields.JSONField[dict[str, object]](default=dict)

    class Meta:
        table = "audit_events"
        ordering = ("-id",)
