"""Password changes and resets: `users.must_change_password`, `users.password_changed_at`, `issued_tokens`.

`issued_tokens` remembers each token issued at login until it expires, so a password change can revoke the
account's other tokens and an admin's reset all of them (through `revoked_tokens`, the rule introspection
already applies). Tortoise's AddField adds a NOT NULL column without a database default, which fails on a table
that has rows; `must_change_password` is added with `DEFAULT FALSE` instead (existing accounts need no change).
"""

from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class AddFlagColumn(ops.AddField):
    """AddField for the model state; in the database, a BOOLEAN NOT NULL column with DEFAULT FALSE."""

    async def database_forward(self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None) -> None:
        if state_editor is not None:
            await state_editor._run_sql(
                f"ALTER TABLE users ADD COLUMN IF NOT EXISTS {self.name} BOOLEAN NOT NULL DEFAULT FALSE"
            )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_upload_stop_once")]

    initial = False

    operations = [
        ops.CreateModel(
            name="IssuedToken",
            fields=[
                ("jti", fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ("user_id", fields.UUIDField(db_index=True)),
                ("expires_at", fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ("issued_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "issued_tokens",
                "app": "accounts",
                "pk_attr": "jti",
                "table_description": "A token issued at login, kept until it expires.",
            },
            bases=["Model"],
        ),
        AddFlagColumn(model_name="User", name="must_change_password", field=fields.BooleanField(default=False)),
        ops.AddField(
            model_name="User",
            name="password_changed_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
