"""instances.cost_bytes: the job's memory estimate (`common.dicom.cost`), computed when the instance is registered.

Nullable: instances registered before it have none; their jobs are routed by size and estimated by the processor.
"""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [("pipeline", "0002_reconcile_attempts")]

    initial = False

    operations = [
        ops.AddField(model_name="Instance", name="cost_bytes", field=fields.BigIntField(null=True)),
    ]
