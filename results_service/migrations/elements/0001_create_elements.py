from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields
from tortoise.indexes import Index


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="Element",
            fields=[
                ("row_id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("owner", fields.CharField(max_length=128)),
                ("element_id", fields.CharField(max_length=64)),
                ("device_name", fields.CharField(db_index=True, max_length=255)),
                ("average_before", fields.FloatField()),
                ("average_after", fields.FloatField()),
                ("data_size", fields.BigIntField()),
                ("raw_data", fields.JSONField(encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "elements",
                "app": "elements",
                "unique_together": (("owner", "element_id"),),
                "pk_attr": "row_id",
                "table_description": "One element of one owner: its own id (the key in URLs), device, the figures and the raw data.",
            },
            bases=["Model"],
        ),
        ops.AddIndex(model_name="Element", index=Index(fields=["owner", "row_id"])),
    ]
