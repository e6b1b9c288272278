"""A migration operation for a NOT NULL column added to a table that may already have rows.

Tortoise's AddField adds a NOT NULL column without a database default, which fails on a table with rows
and leaves raw INSERTs without a value. This keeps AddField's change to the model state and adds the
column with the database default the caller names.
"""

from typing import Any

from tortoise.migrations import operations as ops


class AddColumnWithDefault(ops.AddField):
    """AddField for the model state; in the database `ALTER TABLE <table> ADD COLUMN <name> <column_sql>`."""

    def __init__(self, model_name: str, name: str, field: Any, *, table: str, column_sql: str) -> None:
        super().__init__(model_name=model_name, name=name, field=field)
        self.table = table
        self.column_sql = column_sql

    async def database_forward(self, app_label: str, old_state: Any, new_state: Any, state_editor: Any = None) -> None:
        if state_editor is not None:
            await state_editor._run_sql(
                f"ALTER TABLE {self.table} ADD COLUMN IF NOT EXISTS {self.name} {self.column_sql}"
            )
