"""Password changes and resets: `users.must_change_password`, `users.password_changed_at`, `issued_tokens`.

`issued_tokens` remembers each token issued at login until it expires, so a password change can revoke the
account's other tokens and an admin's reset all of them (through `revoked_tokens`, the rule introspection
already applies). `must_change_password` is added with `DEFAULT FALSE` (`AddColumnWithDefault`): existing accounts need no change.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from results_service.migrations.columns import AddColumnWithDefault


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
        AddColumnWithDefault(
            model_name="User",
            name="must_change_password",
            field=fields.BooleanField(default=False),
            table="users",
            column_sql="BOOLEAN NOT NULL DEFAULT FALSE",
        ),
        ops.AddField(
            model_name="User",
            name="password_changed_at",
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
    ]
