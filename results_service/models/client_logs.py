"""Logs that clients sent for support to read (Tortoise app `client_logs`).

A domain of its own: nothing else refers to these rows, so they are migrated (and can be dropped or
pruned) without touching uploads, instances or accounts. `upload_id` is a label the client gave, not
a foreign key: a log may describe an upload that was refused before it was registered.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class ClientLog(Model):
    """One log as sent: bytes (never decoded or rewritten), who sent it, and what it says it is about."""

    id = fields.CharField(max_length=32, primary_key=True)
    owner = fields.CharField(max_length=128)
    upload_id = fields.CharField(max_length=64, null=True)
    name = fields.CharField(max_length=255, null=True)
    content_type = fields.CharField(max_length=64)
    size = fields.BigIntField()
    body = fields.BinaryField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "client_logs"
        # An owner's page, newest first: WHERE owner = ? ORDER BY created_at DESC, id DESC walks this index.
        indexes = (("owner", "created_at"), ("upload_id",))
