from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from common.messaging.messages import InstanceStatus
from common.schemas.instances import FileStatus
from json import dumps, loads
from tortoise.fields.base import OnDelete
from tortoise import fields


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="Upload",
            fields=[
                ("id", fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ("owner", fields.CharField(db_index=True, max_length=128)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "uploads",
                "app": "pipeline",
                "pk_attr": "id",
                "table_description": "One `POST /api/uploads`: the id ingest gave it and who made it.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Instance",
            fields=[
                ("id", fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ("owner", fields.CharField(max_length=128)),
                (
                    "upload",
                    fields.ForeignKeyField(
                        "pipeline.Upload",
                        source_field="upload_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="instances",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("sha256", fields.CharField(max_length=64)),
                ("size", fields.BigIntField()),
                ("file_name", fields.CharField(max_length=1024)),
                (
                    "status",
                    fields.CharEnumField(
                        db_index=True,
                        description="RECEIVED: received\nQUEUED: queued\nPROCESSING: processing\nDONE: done\nFAILED: failed",
                        enum_type=InstanceStatus,
                        max_length=16,
                    ),
                ),
                ("reason", fields.TextField(null=True, unique=False)),
                ("sop_class_uid", fields.CharField(max_length=128)),
                ("sop_instance_uid", fields.CharField(max_length=128)),
                ("study_instance_uid", fields.CharField(db_index=True, max_length=128)),
                ("series_instance_uid", fields.CharField(max_length=128)),
                ("modality", fields.CharField(null=True, db_index=True, max_length=16)),
                ("transfer_syntax_uid", fields.CharField(max_length=128)),
                ("study_date", fields.CharField(null=True, max_length=16)),
                ("number_of_frames", fields.IntField(null=True)),
                ("rows", fields.IntField(null=True)),
                ("columns", fields.IntField(null=True)),
                ("created_at", fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "instances",
                "app": "pipeline",
                "unique_together": (("owner", "sha256"),),
                "pk_attr": "id",
                "table_description": "One stored DICOM file of one owner (its bytes are in the blob store under `sha256`).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Result",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "pipeline.Instance",
                        source_field="instance_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="results",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("pipeline_version", fields.CharField(max_length=16)),
                (
                    "status",
                    fields.CharEnumField(
                        description="RECEIVED: received\nQUEUED: queued\nPROCESSING: processing\nDONE: done\nFAILED: failed",
                        enum_type=InstanceStatus,
                        max_length=16,
                    ),
                ),
                (
                    "data",
                    fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(",", ":")), decoder=loads),
                ),
                ("reason", fields.TextField(null=True, unique=False)),
                ("message_id", fields.CharField(max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "results",
                "app": "pipeline",
                "unique_together": (("instance", "pipeline_version"),),
                "pk_attr": "id",
                "table_description": "The outcome of processing one instance with one pipeline version (the ImageResult as JSON).",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="UploadFile",
            fields=[
                ("id", fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                (
                    "upload",
                    fields.ForeignKeyField(
                        "pipeline.Upload",
                        source_field="upload_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="files",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("index", fields.IntField()),
                ("name", fields.CharField(max_length=1024)),
                ("sha256", fields.CharField(null=True, max_length=64)),
                ("size", fields.BigIntField(null=True)),
                (
                    "status",
                    fields.CharEnumField(
                        description="ACCEPTED: accepted\nDUPLICATE: duplicate\nREJECTED: rejected",
                        enum_type=FileStatus,
                        max_length=16,
                    ),
                ),
                ("reason", fields.TextField(null=True, unique=False)),
                (
                    "instance",
                    fields.ForeignKeyField(
                        "pipeline.Instance",
                        source_field="instance_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="upload_files",
                        on_delete=OnDelete.RESTRICT,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "upload_files",
                "app": "pipeline",
                "unique_together": (("upload", "index"),),
                "pk_attr": "id",
                "table_description": "One file of an upload and what happened to it at the door; (upload, index) makes retries idempotent.",
            },
            bases=["Model"],
        ),
    ]
