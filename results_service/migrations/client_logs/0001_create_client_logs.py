from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='ClientLog',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ('owner', fields.CharField(max_length=128)),
                ('upload_id', fields.CharField(null=True, max_length=64)),
                ('name', fields.CharField(null=True, max_length=255)),
                ('content_type', fields.CharField(max_length=64)),
                ('size', fields.BigIntField()),
                ('body', fields.BinaryField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'client_logs', 'app': 'client_logs', 'indexes': [Index(fields=['owner', 'created_at']), Index(fields=['upload_id'])], 'pk_attr': 'id', 'table_description': 'One log as sent: bytes (never decoded or rewritten), who sent it, and what it says it is about.'},
            bases=['Model'],
        ),
    ]
