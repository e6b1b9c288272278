from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.indexes import Index


class Migration(migrations.Migration):
    dependencies = [("elements", "0002_element_owner")]

    initial = False

    operations = [
        ops.AddIndex(
            model_name="Element",
            index=Index(fields=["owner", "row_id"]),
        ),
    ]
