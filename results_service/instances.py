"""HTTP handlers of the pipeline's read API: uploads, instances, previews and studies (thin over
`pipeline_queries`)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel

from common.app.bodies import read_query
from common.app.pagination import next_page
from common.auth.identity import Caller, request_caller
from common.schemas.instances import InstanceListQuery, Page, StudyListQuery
from common.storage.blobs import BlobNotFound, BlobUnreadable
from results_service import pipeline_queries
from results_service.audit import audited
from results_service.instance_files import read_patient, unreadable
from results_service.keys import blob_store_key

PageT = TypeVar("PageT", bound=Page[Any])


def _json(model: BaseModel, *, status: int = 200) -> web.Response:
    return web.Response(status=status, body=model.model_dump_json().encode(), content_type="application/json")


def _caller(request: web.Request) -> Caller:
    return request_caller(request)


async def handle_get_upload(request: web.Request) -> web.Response:
    """GET /api/uploads/{upload_id}: the files of an upload and the live status of each."""
    upload_id = request.match_info["upload_id"]
    async with audited(request, "upload.read", resource_type="upload", resource_id=upload_id):
        return _json(await pipeline_queries.get_upload(upload_id, _caller(request)))


async def handle_list_instances(request: web.Request) -> web.Response:
    """GET /api/instances?status=&modality=&study=&limit=&offset=: a page of the caller's instances."""
    async with audited(request, "instance.list", resource_type="instance") as record:
        query = read_query(request, InstanceListQuery)
        page = await pipeline_queries.list_instances(query, _caller(request))
        record["count"] = len(page.items)
    return _json(_with_next(request, page))


async def handle_get_instance(request: web.Request) -> web.Response:
    """GET /api/instances/{instance_id}: status, identifying UIDs, the result, the reason when failed, and
    the patient's name, id and birth date (only the owner and admins can reach an instance at all)."""
    instance_id = request.match_info["instance_id"]
    async with audited(request, "instance.read", resource_type="instance", resource_id=instance_id):
        view = await pipeline_queries.get_instance(instance_id, _caller(request))
        patient = await asyncio.to_thread(read_patient, request.app[blob_store_key], view.sha256)
        return _json(view.model_copy(update={"patient": patient}))


async def handle_preview(request: web.Request) -> web.Response:
    """GET /api/instances/{instance_id}/preview.png: the PNG preview from the blob store."""
    instance_id = request.match_info["instance_id"]
    async with audited(request, "instance.preview", resource_type="instance", resource_id=instance_id):
        key = await pipeline_queries.preview_key(instance_id, _caller(request))
        if request.headers.get("If-None-Match") == f'"{key}"':
            return web.Response(status=304, headers={"ETag": f'"{key}"'})
        try:
            body = await request.app[blob_store_key].read_bytes(key)
        except BlobNotFound as exc:
            raise pipeline_queries.PreviewNotFound(f"The preview of instance {instance_id} is missing.") from exc
        except BlobUnreadable as exc:
            raise unreadable(instance_id, "preview", exc) from exc
    headers = {"ETag": f'"{key}"', "Cache-Control": "private, max-age=3600"}
    return web.Response(body=body, content_type="image/png", headers=headers)


def _with_next(request: web.Request, page: PageT) -> PageT:
    """The page with its link to the next one (the request's own filters kept)."""
    link = next_page(request.rel_url, limit=page.limit, offset=page.offset, shown=len(page.items), total=page.total)
    return page.model_copy(update={"next": link})


async def handle_list_studies(request: web.Request) -> web.Response:
    """GET /api/studies?limit=&offset=: a page of the caller's studies with counts of instances per state,
    the total and the link to the next page."""
    async with audited(request, "study.list", resource_type="study") as record:
        query = read_query(request, StudyListQuery)
        page = await pipeline_queries.list_studies(query, _caller(request))
        record["count"] = len(page.items)
    return _json(_with_next(request, page))
