from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="Element",
            fields=[
                ("row_id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ("element_id", fields.CharField(unique=True, max_length=64)),
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
                "pk_attr": "row_id",
                "table_description": "One element: its own id (the key in URLs), device, the figures and the raw data.",
            },
            bases=["Model"],
        ),
    ]
