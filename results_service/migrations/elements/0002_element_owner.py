from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.migrations.constraints import UniqueConstraint


class Migration(migrations.Migration):
    dependencies = [("elements", "0001_create_elements")]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name="Element",
            options={
                "table": "elements",
                "app": "elements",
                "unique_together": (("owner", "element_id"),),
                "pk_attr": "row_id",
                "table_description": "One element of one owner: its own id (the key in URLs), device, the figures and the raw data.",
            },
        ),
        ops.AlterField(
            model_name="Element",
            name="element_id",
            field=fields.CharField(max_length=64),
        ),
        ops.AddField(
            model_name="Element",
            name="owner",
            field=fields.CharField(db_default="local", max_length=128),
        ),
        ops.AddConstraint(
            model_name="Element",
            constraint=UniqueConstraint(fields=("owner", "element_id"), name=None),
        ),
    ]
