"""The read side of the pipeline: uploads, instances, previews and studies, always scoped to the caller.

Another owner's upload or instance is not found, exactly like a missing one (a user cannot learn
that someone else's id exists); lists are filtered in the query itself.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from tortoise.functions import Count, Max, Min

from common.identity import Caller
from common.messages import PIPELINE_VERSION, ImageResult, InstanceStatus
from common.problems import NotFound
from common.schemas.instances import (
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
from results_service.models.pipeline import Instance, Result, Upload, UploadFile


class UploadNotFound(NotFound):
    """No upload with this id for this caller."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"Upload {upload_id} was not found.")


class InstanceNotFound(NotFound):
    """No instance with this id for this caller."""

    def __init__(self, instance_id: str) -> None:
        super().__init__(f"Instance {instance_id} was not found.")


class PreviewNotFound(NotFound):
    """The instance exists but has no preview (not processed yet, failed, or no pixel data)."""


def _counts(statuses: Counter[str]) -> StatusCounts:
    return StatusCounts(**{status.value: statuses.get(status.value, 0) for status in InstanceStatus})


async def get_upload(upload_id: str, caller: Caller) -> UploadView:
    """One upload with each file's outcome and its instance's live status."""
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
    return InstancePage(items=items, total=total, limit=query.limit, offset=query.offset)


async def _instance(instance_id: str, caller: Caller) -> Instance:
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


async def list_studies(query: StudyListQuery, caller: Caller) -> StudyPage:
    """The caller's studies, oldest first, each with its modalities, series and counts per state."""
    rows = (
        await Instance.filter(**caller.owner_filter())
        .annotate(n=Count("id"), first=Min("created_at"), last=Max("updated_at"))
        .group_by("study_instance_uid", "series_instance_uid", "modality", "status")
        .values("study_instance_uid", "series_instance_uid", "modality", "status", "n", "first", "last")
    )
    studies: dict[str, dict[str, Any]] = {}
    for row in rows:
        study = studies.setdefault(
            row["study_instance_uid"],
            {"series": set(), "modalities": set(), "counts": Counter(), "first": row["first"], "last": row["last"]},
        )
        study["series"].add(row["series_instance_uid"])
        if row["modality"]:
            study["modalities"].add(row["modality"])
        study["counts"][str(row["status"])] += row["n"]
        study["first"] = min(study["first"], row["first"])
        study["last"] = max(study["last"], row["last"])
    ordered = sorted(studies.items(), key=lambda item: (item[1]["first"], item[0]))
    page = ordered[query.offset : query.offset + query.limit]
    items = [_study_view(uid, study) for uid, study in page]
    return StudyPage(items=items, total=len(ordered), limit=query.limit, offset=query.offset)


def _study_view(uid: str, study: dict[str, Any]) -> StudyView:
    counts: Counter[str] = study["counts"]
    first: datetime = study["first"]
    last: datetime = study["last"]
    return StudyView(
        study_instance_uid=uid,
        modalities=sorted(study["modalities"]),
        series=len(study["series"]),
        instances=sum(counts.values()),
        counts=_counts(counts),
        first_received_at=first,
        last_updated_at=last,
    )
