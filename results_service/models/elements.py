"""The brief's signal elements as stored rows (Tortoise app `elements`)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Element(Model):
    """One element of one owner: its own id (the key in URLs), device, the figures and the raw data.

    The primary key is a surrogate (`row_id`) so that renaming an element changes one column of
    one row; `row_id` also gives the listing a stable, unique order. Element ids are unique per
    owner, not globally: a global constraint would tell a user (by a 409) that someone else
    already uses an id.
    """

    row_id = fields.BigIntField(primary_key=True)
    owner = fields.CharField(max_length=128)
    element_id = fields.CharField(max_length=64)
    device_name = fields.CharField(max_length=255, db_index=True)
    average_before = fields.FloatField()
    average_after = fields.FloatField()
    data_size = fields.BigIntField()
    raw_data = fields.JSONField[list[str]]()
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "elements"
        unique_together = (("owner", "element_id"),)
        # An owner's page in creation order: WHERE owner = ? ORDER BY row_id LIMIT/OFFSET walks this index.
        indexes = (("owner", "row_id"),)
        ordering = ("row_id",)

    def __str__(self) -> str:
        return self.element_id
