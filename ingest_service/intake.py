"""Take one file of an upload: validate and store it (`staging`), register it, publish its job.

A file is `accepted` once its registration is committed by results_service and its job confirmed
by the broker, so the 202 means: blob fsynced, registration durable, job durable. ingest decides
no instance's state: the broker routes a copy of the job to results_service, which moves the
instance to `queued` when it consumes it. A job is published only for a new instance; if ingest
dies (or the broker fails) between the registration and the confirm, results_service's reconciler
republishes the job of the instance it finds still `received`. A file that fails validation is
rejected and the next one is taken; results_service or RabbitMQ failing stops the upload with a
503 (the files before it keep their outcomes). A part that holds no file (an empty part) is
answered as rejected but never registered: a body of empty parts writes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from common.app.logs import get_logger
from common.app.problems import ServiceUnavailable
from common.auth.identity import Caller
from common.dicom.cost import estimate_job_cost
from common.messaging.broker import BROKER_ERRORS, Topology
from common.messaging.jobs import build_job, publish_job, wait_publishable
from common.schemas.instances import FileRegistered, FileRegistration, FileStatus
from common.schemas.uploads import UploadedFile
from common.storage.blobs import BlobStore
from ingest_service.parts import IncomingFile
from ingest_service.registration import Registrar
from ingest_service.settings import IngestSettings
from ingest_service.staging import Refused, StoredFile, store_file

log = get_logger(__name__)


class BrokerUnavailable(ServiceUnavailable):
    """A job was not confirmed by RabbitMQ; the file is not accepted."""


@dataclass
class Intake:
    """The files of one upload, taken one at a time; `files` holds their outcomes in order."""

    settings: IngestSettings
    store: BlobStore
    topology: Topology
    registrar: Registrar
    upload_id: str
    caller: Caller
    files: list[UploadedFile] = field(default_factory=list)
    registered_files: int = 0
    """How many of `files` results_service registered (the others held no file)."""

    @property
    def owner(self) -> str:
        """The uploader, who owns the upload and its instances."""
        return self.caller.user_id

    async def take(self, incoming: IncomingFile) -> UploadedFile:
        """Read, check and store one file; append and return its outcome."""
        index = len(self.files)
        # While the broker takes no jobs, no file is taken: a 503 with Retry-After before anything is written.
        await wait_publishable(self.topology.exchange, self.settings.broker_blocked_wait)
        if incoming.chunks is None and not incoming.registered:
            outcome = UploadedFile(name=incoming.name, status=FileStatus.REJECTED, reason=incoming.reason)
        elif incoming.chunks is None:
            outcome = await self._reject(index, incoming.name, incoming.reason or "refused")
        else:
            outcome = await self._take_stream(index, incoming)
        self.files.append(outcome)
        log.info(
            "upload_file",
            upload_id=self.upload_id,
            index=index,
            status=outcome.status,
            instance_id=outcome.instance_id,
            reason=outcome.reason,
        )
        return outcome

    async def _take_stream(self, index: int, incoming: IncomingFile) -> UploadedFile:
        assert incoming.chunks is not None
        try:
            stored = await store_file(
                self.store,
                incoming.chunks,
                max_bytes=incoming.max_bytes,
                memory_limit=self.settings.ingest_memory_file_bytes,
            )
        except Refused as exc:
            return await self._reject(index, incoming.name, exc.reason, exc.sha256, exc.size)
        return await self._accept(index, incoming.name, stored)

    async def _reject(
        self, index: int, name: str, reason: str, sha256: str | None = None, size: int | None = None
    ) -> UploadedFile:
        registration = FileRegistration(
            index=index,
            name=name,
            owner=self.owner,
            sha256=sha256,
            size=size,
            outcome=FileStatus.REJECTED,
            reason=reason[:2000],
        )
        await self._register(registration)
        return UploadedFile(name=name, sha256=sha256, status=FileStatus.REJECTED, reason=reason)

    async def _accept(self, index: int, name: str, stored: StoredFile) -> UploadedFile:
        registration = FileRegistration(
            index=index,
            name=name,
            owner=self.owner,
            sha256=stored.sha256,
            size=stored.size,
            outcome=FileStatus.ACCEPTED,
            dicom=stored.metadata,
        )
        registered = await self._register(registration)
        if registered.status is FileStatus.ACCEPTED and registered.instance_id is not None:
            await self._queue(registered.instance_id, stored)
        return UploadedFile(
            name=name,
            sha256=stored.sha256,
            status=registered.status,
            instance_id=registered.instance_id,
            reason=registered.reason,
        )

    async def _register(self, registration: FileRegistration) -> FileRegistered:
        registered = await self.registrar.register(self.upload_id, registration, self.caller)
        self.registered_files += 1
        return registered

    async def _queue(self, instance_id: str, stored: StoredFile) -> None:
        """Publish the new instance's job and wait for the broker's confirm."""
        job = build_job(
            instance_id=instance_id,
            upload_id=self.upload_id,
            owner=self.owner,
            sha256=stored.sha256,
            size=stored.size,
            sop_class_uid=stored.metadata.sop_class_uid,
            transfer_syntax_uid=stored.metadata.transfer_syntax_uid,
            cost_bytes=estimate_job_cost(stored.metadata, stored.size).memory_bytes,
        )
        try:
            routing_key = await asyncio.wait_for(
                publish_job(
                    self.topology.exchange,
                    job,
                    self.settings.large_job_bytes,
                    blocked_wait=self.settings.broker_blocked_wait,
                ),
                self.settings.results_timeout,
            )
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(
                f"RabbitMQ did not confirm the job of file {stored.sha256[:12]}… ({type(exc).__name__}); "
                "retry the files not yet accepted"
            ) from exc
        log.info("job_published", instance_id=instance_id, routing_key=routing_key, message_id=job.message_id)
