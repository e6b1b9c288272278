from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from uuid import uuid4
from tortoise import fields


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="AuditEvent",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("at", fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
                ("actor_id", fields.CharField(null=True, db_index=True, max_length=64)),
                ("actor_email", fields.CharField(null=True, max_length=320)),
                ("action", fields.CharField(db_index=True, max_length=64)),
                ("resource_type", fields.CharField(null=True, max_length=64)),
                ("resource_id", fields.CharField(null=True, max_length=128)),
                ("outcome", fields.CharField(max_length=16)),
                ("correlation_id", fields.CharField(null=True, max_length=128)),
                ("client", fields.CharField(null=True, max_length=128)),
                (
                    "detail",
                    fields.JSONField(
                        default=dict, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads
                    ),
                ),
            ],
            options={
                "table": "audit_events",
                "app": "accounts",
                "pk_attr": "id",
                "table_description": "Who did what to which resource, when, and how it ended. Never updated, never deleted.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="RevokedToken",
            fields=[
                ("jti", fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ("user_id", fields.UUIDField()),
                ("expires_at", fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ("revoked_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "revoked_tokens",
                "app": "accounts",
                "pk_attr": "jti",
                "table_description": "A logged-out token id, kept until the token would have expired anyway.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="User",
            fields=[
                ("id", fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ("email", fields.CharField(unique=True, max_length=320)),
                ("password_hash", fields.CharField(max_length=255)),
                ("role", fields.CharField(default="user", max_length=16)),
                ("disabled", fields.BooleanField(default=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "users",
                "app": "accounts",
                "pk_attr": "id",
                "table_description": "A person who logs in. `email` is stored lower-cased, so uniqueness is case-insensitive.",
            },
            bases=["Model"],
        ),
    ]
