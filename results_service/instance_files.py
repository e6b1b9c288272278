"""The stored DICOM file of an instance: the original or a de-identified copy, streamed; and the
patient-identifying attributes shown on the instance page.

Both are reachable only inside the caller's scope (the owner, or an admin): anyone else's
instance is a 404 like a missing one. Downloads are audited before the first byte goes out.
"""

from __future__ import annotations

import asyncio
from typing import BinaryIO

import pydicom
from aiohttp import web
from pydicom.errors import InvalidDicomError

from common.app.bodies import read_query
from common.app.logs import get_logger
from common.app.problems import NotFound, ProblemError
from common.auth.identity import request_caller
from common.schemas.instances import InstanceFileQuery, PatientView
from common.storage.blobs import BlobError, BlobNotFound, BlobStore, BlobUnreadable
from common.storage.crypto_keys import CryptoError
from results_service import pipeline_queries
from results_service.audit import audited
from results_service.deid_stream import plan_deidentified_copy
from results_service.keys import blob_store_key, deidentifier_key

log = get_logger(__name__)

DICOM_TYPE = "application/dicom"
_PATIENT_TAGS = ["PatientName", "PatientID", "PatientBirthDate"]


class StoredFileMissing(NotFound):
    """The instance exists but its file is not in the blob store."""


class StoredFileUnreadable(ProblemError):
    """A stored blob of an instance cannot be decrypted: its key id is no longer in `BLOB_KEYS`, or the
    file was damaged or tampered with.

    A 500, not a 503: nothing transient is wrong and a retry gets the same answer until an operator
    restores the key or the file, so clients must not be told to come back later.
    """

    status = 500


def unreadable(instance_id: str, what: str, exc: BlobUnreadable) -> StoredFileUnreadable:
    """Log an undecryptable blob with its instance for operators, and the problem that answers the caller."""
    log.error("stored_file_unreadable", instance_id=instance_id, blob=what, error=str(exc))
    return StoredFileUnreadable(
        f"The stored {what} of instance {instance_id} cannot be decrypted: its key was rotated out or the "
        "file is damaged. An operator has to restore the key or the file."
    )


def read_patient(store: BlobStore, sha256: str) -> PatientView | None:
    """Name, id and birth date from the stored file's header (blocking); None when the file cannot be read."""
    try:
        with store.open(sha256) as fp:
            header = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=_PATIENT_TAGS)
    except (BlobError, CryptoError, OSError, ValueError, InvalidDicomError):
        return None
    name, patient_id, birth_date = (str(header.get(keyword) or "") or None for keyword in _PATIENT_TAGS)
    return PatientView(name=name, id=patient_id, birth_date=birth_date)


def _open_checked(store: BlobStore, key: str) -> BinaryIO:
    """Open the blob and authenticate its first segment, so a bad file is a problem before any byte is sent."""
    fp = store.open(key)
    try:
        fp.read(1)
        fp.seek(0)
    except CryptoError as exc:
        fp.close()
        raise BlobUnreadable(f"blob {key}: {exc}") from exc
    return fp


async def _open(store: BlobStore, key: str, instance_id: str) -> BinaryIO:
    try:
        return await asyncio.to_thread(_open_checked, store, key)
    except BlobNotFound as exc:
        raise StoredFileMissing(f"The stored file of instance {instance_id} is missing.") from exc
    except BlobUnreadable as exc:
        raise unreadable(instance_id, "file", exc) from exc


async def _send(
    request: web.Request, store: BlobStore, fp: BinaryIO, head: bytes, body: tuple[int, int | None], filename: str
) -> web.StreamResponse:
    """`head`, then the plaintext of `fp` from body[0] to body[1] (None: its end), as one download."""
    start, end = body
    if end is None:
        end = await asyncio.to_thread(fp.seek, 0, 2)
    response = web.StreamResponse(
        headers={
            "Content-Type": DICOM_TYPE,
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "private, no-store",
        }
    )
    response.content_length = len(head) + end - start
    await response.prepare(request)
    if head:
        await response.write(head)
    try:
        async for chunk in store.iter_chunks(fp, start=start, end=end):
            await response.write(chunk)
    except BlobUnreadable as exc:
        # The status is sent already: cut the connection so the client sees a short body, never bad bytes.
        log.error("stored_file_unreadable", instance_id=request.match_info["instance_id"], blob="file", error=str(exc))
        if request.transport is not None:
            request.transport.close()
        return response
    await response.write_eof()
    return response


async def handle_file(request: web.Request) -> web.StreamResponse:
    """GET /api/instances/{instance_id}/file[?deidentified=true]: the stored DICOM file, streamed."""
    instance_id = request.match_info["instance_id"]
    store = request.app[blob_store_key]
    deidentified = request.query.get("deidentified", "").lower() in {"true", "1", "yes", "on"}
    action = "instance.download_deidentified" if deidentified else "instance.download"
    async with audited(request, action, resource_type="instance", resource_id=instance_id):
        query = read_query(request, InstanceFileQuery)
        fp = await _open(store, await pipeline_queries.file_key(instance_id, request_caller(request)), instance_id)
        body: tuple[int, int | None]
        try:
            if query.deidentified:
                plan = await asyncio.to_thread(plan_deidentified_copy, fp, request.app[deidentifier_key])
                head, body, filename = plan.head, plan.pixels, f"{instance_id}-deidentified.dcm"
            else:
                head, body, filename = b"", (0, None), f"{instance_id}.dcm"
        except BaseException:
            fp.close()
            raise
    try:
        return await _send(request, store, fp, head, body, filename)
    finally:
        fp.close()
