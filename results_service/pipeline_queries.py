"""The read side of the pipeline: uploads, instances, previews and studies, always scoped to the caller.

Another owner's upload or instance is not found, exactly like a missing one (a user cannot learn
that someone else's id exists); lists are filtered in the query itself.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from tortoise import connections

from common.app.problems import NotFound
from common.auth.identity import Caller
from common.messaging.messages import PIPELINE_VERSION, ImageResult, InstanceStatus
from common.schemas.instances import (
    ID_PATTERN,
    INSTANCE_ID_PATTERN,
    FileStatus,
    InstanceListQuery,
    InstancePage,
    InstanceView,
    StatusCounts,
    StudyListQuery,
    StudyPage,
    StudyView,
    UploadFileView,
    UploadView,
)
from common.schemas.text import shown
from results_service.models.pipeline import Instance, Result, Upload, UploadFile

_UPLOAD_ID = re.compile(ID_PATTERN)
_INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)


class UploadNotFound(NotFound):
    """No upload with this id for this caller."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"Upload '{shown(upload_id)}' was not found.")


class InstanceNotFound(NotFound):
    """No instance with this id for this caller."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"Instance '{shown(instance_id)}' was not found.")


class PreviewNotFound(NotFound):
    """The instance exists but has no preview (not processed yet, failed, or no pixel data)."""


def _counts(statuses: Mapping[str, Any]) -> StatusCounts:
    """Counts per state from any mapping keyed by state name (a Counter, or a row with one column per state)."""
    return StatusCounts(**{status.value: statuses.get(status.value, 0) for status in InstanceStatus})


async def get_upload(upload_id: str, caller: Caller) -> UploadView:
    """One upload with each file's outcome and its instance's live status."""
    if not _UPLOAD_ID.match(upload_id):  # cannot exist: not found, without a query
        raise UploadNotFound(upload_id)
    upload = await Upload.filter(id=upload_id, **caller.owner_filter()).first()
    if upload is None:
        raise UploadNotFound(upload_id)
    files = await UploadFile.filter(upload_id=upload_id).order_by("index")
    statuses = dict(
        await Instance.filter(id__in={f.instance_id for f in files if f.instance_id}).values_list("id", "status")
    )
    views = [
        UploadFileView(
            index=f.index,
            name=f.name,
            sha256=f.sha256,
            size=f.size,
            status=f.status,
            reason=f.reason,
            instance_id=f.instance_id,
            instance_status=statuses.get(f.instance_id) if f.instance_id else None,
        )
        for f in files
    ]
    outcomes = Counter(f.status for f in files)
    return UploadView(
        id=upload.id,
        created_at=upload.created_at,
        files=views,
        accepted=outcomes[FileStatus.ACCEPTED],
        duplicates=outcomes[FileStatus.DUPLICATE],
        rejected=outcomes[FileStatus.REJECTED],
        counts=_counts(Counter(str(v.instance_status) for v in views if v.instance_status)),
    )


def _view(instance: Instance, result: Result | None) -> InstanceView:
    image = ImageResult.model_validate(result.data) if result is not None and result.data is not None else None
    return InstanceView(
        id=instance.id,
        upload_id=instance.upload_id,
        status=instance.status,
        reason=instance.reason,
        sop_class_uid=instance.sop_class_uid,
        sop_instance_uid=instance.sop_instance_uid,
        study_instance_uid=instance.study_instance_uid,
        series_instance_uid=instance.series_instance_uid,
        modality=instance.modality,
        transfer_syntax_uid=instance.transfer_syntax_uid,
        file_name=instance.file_name,
        sha256=instance.sha256,
        size=instance.size,
        created_at=instance.created_at,
        updated_at=instance.updated_at,
        result=image,
    )


async def _results_of(instance_ids: list[str]) -> dict[str, Result]:
    results = await Result.filter(instance_id__in=instance_ids, pipeline_version=PIPELINE_VERSION)
    return {r.instance_id: r for r in results}


async def list_instances(query: InstanceListQuery, caller: Caller) -> InstancePage:
    """A page of the caller's instances, oldest first (ties broken by id, so pages never overlap)."""
    filters: dict[str, Any] = caller.owner_filter()
    if query.status is not None:
        filters["status"] = query.status
    if query.modality is not None:
        filters["modality"] = query.modality
    if query.study is not None:
        filters["study_instance_uid"] = query.study
    matching = Instance.filter(**filters)
    total = await matching.count()
    instances = await matching.order_by("created_at", "id").offset(query.offset).limit(query.limit)
    results = await _results_of([i.id for i in instances])
    items = [_view(i, results.get(i.id)) for i in instances]
    return InstancePage(items=items, total=total, limit=query.limit, offset=query.offset, next=None)


async def _instance(instance_id: str, caller: Caller) -> Instance:
    """The caller's instance with this id; an id not of the instances' shape cannot exist and is not looked up."""
    if not _INSTANCE_ID.match(instance_id):
        raise InstanceNotFound(instance_id)
    instance = await Instance.filter(id=instance_id, **caller.owner_filter()).first()
    if instance is None:
        raise InstanceNotFound(instance_id)
    return instance


async def get_instance(instance_id: str, caller: Caller) -> InstanceView:
    """One instance with its status, identifying UIDs and result."""
    instance = await _instance(instance_id, caller)
    return _view(instance, (await _results_of([instance.id])).get(instance.id))


async def file_key(instance_id: str, caller: Caller) -> str:
    """The blob key of the instance's stored file (the owner's or, for admins, anyone's)."""
    return (await _instance(instance_id, caller)).sha256


async def preview_key(instance_id: str, caller: Caller) -> str:
    """The blob key of the instance's PNG preview."""
    instance = await _instance(instance_id, caller)
    result = (await _results_of([instance.id])).get(instance.id)
    key = result.data.get("preview_sha256") if result is not None and result.data is not None else None
    if not isinstance(key, str):
        raise PreviewNotFound(f"Instance {instance_id} has no preview (status {instance.status.value}).")
    return key


# One page of the caller's studies, grouped, counted per state, ordered and cut by PostgreSQL: only the
# page's groups come back to Python, whatever the number of studies. Order: first arrival, then the UID
# (unique per group; byte order, whatever the database's locale). A study's first arrival never changes,
# so new studies land on the last page and earlier pages stay put. `total` counts the groups before LIMIT
# (a window over the grouped rows), in the same snapshot as the page.
# $1 limit, $2 offset, $3 the owner when the caller is not an admin.
_STUDY_COLUMNS = """
    study_instance_uid,
    array_agg(DISTINCT modality ORDER BY modality) FILTER (WHERE modality <> '') AS modalities,
    count(DISTINCT series_instance_uid) AS series,
    count(*) AS instances,
    {counts},
    min(created_at) AS first_received_at,
    max(updated_at) AS last_updated_at,
    count(*) OVER () AS total
""".format(counts=",\n    ".join(f"count(*) FILTER (WHERE status = '{s.value}') AS {s.value}" for s in InstanceStatus))
_STUDY_PAGE_SQL = """
SELECT {columns} FROM instances {where}
GROUP BY study_instance_uid
ORDER BY first_received_at, study_instance_uid COLLATE "C"
LIMIT $1 OFFSET $2
"""
# Only for a page past the end, which has no row to carry `total`.
_STUDY_TOTAL_SQL = "SELECT count(DISTINCT study_instance_uid) AS total FROM instances {where}"


def _owner_scope(caller: Caller, parameter: int) -> str:
    """The WHERE clause that keeps a user to their own instances (none for admins), as bind parameter `$n`.

    Two statements rather than `owner = $n OR $n IS NULL`, so each gets a plan that can use the owner filter.
    """
    return "" if caller.is_admin else f"WHERE owner = ${parameter}"


async def list_studies(query: StudyListQuery, caller: Caller) -> StudyPage:
    """A page of the caller's studies, oldest first, each with its modalities, series and counts per state."""
    connection = connections.get("default")
    owner = [] if caller.is_admin else [caller.user_id]
    sql = _STUDY_PAGE_SQL.format(columns=_STUDY_COLUMNS, where=_owner_scope(caller, 3))
    rows = await connection.execute_query_dict(sql, [query.limit, query.offset, *owner])
    if rows:
        total = int(rows[0]["total"])
    elif query.offset == 0:
        total = 0
    else:
        [count] = await connection.execute_query_dict(_STUDY_TOTAL_SQL.format(where=_owner_scope(caller, 1)), owner)
        total = int(count["total"])
    return StudyPage(
        items=[_study_view(row) for row in rows], total=total, limit=query.limit, offset=query.offset, next=None
    )


def _study_view(row: dict[str, Any]) -> StudyView:
    return StudyView(
        study_instance_uid=row["study_instance_uid"],
        modalities=row["modalities"] or [],
        series=row["series"],
        instances=row["instances"],
        counts=_counts(row),
        first_received_at=row["first_received_at"],
        last_updated_at=row["last_updated_at"],
    )
