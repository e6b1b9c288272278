"""`POST /upload`: stream the body's files through the intake and answer with one outcome per file.

What is wrong with the request as a whole is refused before anything is read or written: a content
type or `Content-Encoding` not accepted (415: a compressed body is refused, not decoded; files travel
compressed inside a zip archive, whose limits are checked before any entry is inflated), a declared
length over the limit (413), an empty body (400). `?atomic=true` takes the files all or nothing
(`ingest_service.atomic`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator

from aiohttp import web
from aiohttp.hdrs import CONTENT_ENCODING

from common.app.bodies import read_query
from common.app.logs import get_logger
from common.app.problems import BadRequest, PayloadTooLarge, ProblemError, UnsupportedMediaType, problem_response
from common.auth.identity import Caller, request_caller
from common.messaging.broker import broker_key
from common.schemas.uploads import UploadQuery, UploadReceipt
from ingest_service.archives import zip_files
from ingest_service.atomic import AtomicIntake
from ingest_service.intake import Intake
from ingest_service.keys import blob_store_key, registrar_key, settings_key, stop_reporter_key
from ingest_service.parts import (
    DICOM_TYPE,
    BodyMeter,
    IncomingFile,
    body_chunks,
    multipart_files,
    related_type_is_dicom,
    single_file,
)

log = get_logger(__name__)

ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed"})
ACCEPTED_TYPES = (
    'application/dicom, multipart/form-data, multipart/related; type="application/dicom", or application/zip'
)
ACCEPTED_ENCODINGS = ("identity",)


def _files_of(request: web.Request, meter: BodyMeter) -> AsyncGenerator[IncomingFile, None]:
    """The source of files for this body's content type; 415 for any other type."""
    content_type = request.content_type
    if content_type == DICOM_TYPE:
        return single_file(request, meter)
    max_files = request.app[settings_key].upload_max_files
    if content_type == "multipart/form-data":
        return multipart_files(request, meter, max_files)
    if content_type == "multipart/related":
        if not related_type_is_dicom(request):
            raise UnsupportedMediaType('multipart/related uploads must declare type="application/dicom".')
        return multipart_files(request, meter, max_files)
    if content_type in ZIP_TYPES:
        app = request.app
        return zip_files(body_chunks(request), meter, app[blob_store_key], app[settings_key])
    raise UnsupportedMediaType(f"Send {ACCEPTED_TYPES}, not {content_type!r}.")


def _check_encoding(request: web.Request) -> None:
    encoding = request.headers.get(CONTENT_ENCODING, "").strip().lower()
    if encoding and encoding not in ACCEPTED_ENCODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding[:64]!r} is not accepted; send the body unencoded (identity). "
            "To send files compressed, upload them in a zip archive (application/zip)."
        )


def _check_length(request: web.Request, limit: int) -> None:
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"The upload is {length} bytes; the limit is {limit}.")
    if length == 0:
        raise BadRequest("The body is empty.")


async def _report_stop(request: web.Request, caller: Caller, intake: Intake, status: int) -> None:
    """A 202 needs no report: its records are written with each registration. A problem is reported here."""
    await request.app[stop_reporter_key].report(caller, intake.upload_id, intake.files, status)


async def handle_upload(request: web.Request) -> web.Response:
    """Take every file of the body; 202 with one outcome per file, or a problem naming the files already taken."""
    app = request.app
    settings = app[settings_key]
    query = read_query(request, UploadQuery)
    _check_encoding(request)
    _check_length(request, settings.upload_max_bytes)
    meter = BodyMeter(settings.upload_max_bytes)
    files = _files_of(request, meter)
    caller = request_caller(request)
    intake = (AtomicIntake if query.atomic else Intake)(
        settings=settings,
        store=app[blob_store_key],
        topology=app[broker_key].topology,
        registrar=app[registrar_key],
        upload_id=uuid.uuid4().hex,
        caller=caller,
    )
    try:
        async with contextlib.aclosing(files):
            async for incoming in files:
                await intake.take(incoming)
        if isinstance(intake, AtomicIntake):
            await intake.finish()
        if not intake.registered_files:
            empty = len(intake.files)
            raise BadRequest(
                f"The body holds no files: its {empty} part(s) are empty." if empty else "The body holds no files."
            )
    except ProblemError as exc:
        log.info("upload_stopped", upload_id=intake.upload_id, status=exc.status, taken=len(intake.files))
        await _report_stop(request, caller, intake, exc.status)
        return problem_response(
            exc.status,
            exc.detail,
            instance=request.path,
            headers=exc.headers,
            upload_id=intake.upload_id,
            files=[f.model_dump(mode="json") for f in intake.files],
        )
    finally:
        if isinstance(intake, AtomicIntake):
            await intake.discard()
    receipt = UploadReceipt(upload_id=intake.upload_id, files=intake.files)
    return web.json_response(receipt.model_dump(mode="json"), status=202)
