"""Uploads, their files, the stored instances and their processing results (Tortoise app `pipeline`).

Two unique constraints carry the idempotency of the pipeline: (owner, sha256) makes a second upload
of the same bytes by the same owner a duplicate even when both arrive at once, and
(instance, pipeline_version) keeps one result per instance however often a result is redelivered.
"""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from common.messaging.messages import InstanceStatus
from common.schemas.instances import FileStatus


class Upload(Model):
    """One `POST /api/uploads`: the id ingest gave it and who made it."""

    id = fields.CharField(max_length=64, primary_key=True)
    owner = fields.CharField(max_length=128, db_index=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    files: fields.ReverseRelation[UploadFile]

    class Meta:
        table = "uploads"


class Instance(Model):
    """One stored DICOM file of one owner (its bytes are in the blob store under `sha256`)."""

    id = fields.CharField(max_length=32, primary_key=True)
    owner = fields.CharField(max_length=128)
    upload: fields.ForeignKeyRelation[Upload] = fields.ForeignKeyField(
        "pipeline.Upload", related_name="instances", on_delete=fields.RESTRICT
    )
    upload_id: str
    sha256 = fields.CharField(max_length=64)
    size = fields.BigIntField()
    file_name = fields.CharField(max_length=1024)
    status = fields.CharEnumField(InstanceStatus, max_length=16, db_index=True)
    reason = fields.TextField(null=True)
    sop_class_uid = fields.CharField(max_length=128)
    sop_instance_uid = fields.CharField(max_length=128)
    study_instance_uid = fields.CharField(max_length=128, db_index=True)
    series_instance_uid = fields.CharField(max_length=128)
    modality = fields.CharField(max_length=16, null=True, db_index=True)
    transfer_syntax_uid = fields.CharField(max_length=128)
    study_date = fields.CharField(max_length=16, null=True)
    number_of_frames = fields.IntField(null=True)
    rows = fields.IntField(null=True)
    columns = fields.IntField(null=True)
    # The job's memory estimate (common.dicom.cost) from the registered header; null before it was recorded.
    cost_bytes = fields.BigIntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True, db_index=True)
    updated_at = fields.DatetimeField(auto_now=True)
    # Jobs the reconciler published again for this instance; past its limit the instance fails.
    reconcile_attempts = fields.IntField(default=0)

    results: fields.ReverseRelation[Result]

    class Meta:
        table = "instances"
        unique_together = (("owner", "sha256"),)
        ordering = ("created_at", "id")


class UploadFile(Model):
    """One file of an upload and what happened to it at the door; (upload, index) makes retries idempotent."""

    id = fields.BigIntField(primary_key=True)
    upload: fields.ForeignKeyRelation[Upload] = fields.ForeignKeyField(
        "pipeline.Upload", related_name="files", on_delete=fields.CASCADE
    )
    upload_id: str
    index = fields.IntField()
    name = fields.CharField(max_length=1024)
    sha256 = fields.CharField(max_length=64, null=True)
    size = fields.BigIntField(null=True)
    status = fields.CharEnumField(FileStatus, max_length=16)
    reason = fields.TextField(null=True)
    instance: fields.ForeignKeyNullableRelation[Instance] = fields.ForeignKeyField(
        "pipeline.Instance", related_name="upload_files", null=True, on_delete=fields.RESTRICT
    )
    instance_id: str | None
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "upload_files"
        unique_together = (("upload", "index"),)
        ordering = ("index",)


class Result(Model):
    """The outcome of processing one instance with one pipeline version (the ImageResult as JSON)."""

    id = fields.BigIntField(primary_key=True)
    instance: fields.ForeignKeyRelation[Instance] = fields.ForeignKeyField(
        "pipeline.Instance", related_name="results", on_delete=fields.CASCADE
    )
    instance_id: str
    pipeline_version = fields.CharField(max_length=16)
    status = fields.CharEnumField(InstanceStatus, max_length=16)
    data = fields.JSONField[dict[str, object]](null=True)
    reason = fields.TextField(null=True)
    message_id = fields.CharField(max_length=64)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "results"
        unique_together = (("instance", "pipeline_version"),)
