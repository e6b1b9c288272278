"""instances.reconcile_attempts: how many times the reconciler published an instance's job again.

Tortoise's AddField adds a NOT NULL column without a database default, which fails on a table that
has rows and leaves the raw registration INSERT without a value; this one keeps AddField's state
change and adds the column with `DEFAULT 0`.
"""

from typing import Any

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class AddCounterColumn(ops.AddField):
    """AddField for the model state; in the database, an INT NOT NULL column with DEFAULT 0."""

    async def database_forward(self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None) -> None:
        if state_editor is not None:
            await state_editor._run_sql(
                f"ALTER TABLE instances ADD COLUMN IF NOT EXISTS {self.name} INT NOT NULL DEFAULT 0"
            )


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0001_create_pipeline")]

    initial = False

    operations = [
        AddCounterColumn(model_name="Instance", name="reconcile_attempts", field=fields.IntField(default=0)),
    ]
