"""instances.reconcile_attempts: how many times the reconciler published an instance's job again.

Added with `DEFAULT 0` (`AddColumnWithDefault`): the table has rows, and the raw registration INSERT
names no value for it.
"""

from tortoise import fields, migrations

from results_service.migrations.columns import AddColumnWithDefault


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0001_create_pipeline")]

    initial = False

    operations = [
        AddColumnWithDefault(
            model_name="Instance",
            name="reconcile_attempts",
            field=fields.IntField(default=0),
            table="instances",
            column_sql="INT NOT NULL DEFAULT 0",
        ),
    ]
