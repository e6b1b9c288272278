"""Take one file of an upload: validate and store it (`staging`), register, queue — then report it.

A file is `accepted` only once its job is confirmed by the broker. The confirmed instance is then
reported to results_service with the registrar's next call (`Registrar.confirmed`), which moves it
to `queued` and announces it: nothing more to wait for before the answer, and never a `queued`
instance without a job. A file that fails validation is rejected and the next one is
taken; results_service or RabbitMQ failing stops the upload with a 503 (the files before it keep
their outcomes, nothing is half-written: a registered instance whose job was not confirmed stays
`received` and is queued again when the same bytes are uploaded again).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass, field

from common.app.logs import get_logger
from common.app.problems import ServiceUnavailable
from common.auth.identity import Caller
from common.messaging.broker import BROKER_ERRORS, JOB_LARGE, JOB_STANDARD, Topology, publish
from common.messaging.messages import PIPELINE_VERSION, InstanceStatus, ProcessJob
from common.schemas.instances import FileRegistered, FileRegistration, FileStatus
from common.schemas.uploads import UploadedFile
from common.storage.blobs import BlobStore
from ingest_service.parts import IncomingFile
from ingest_service.registration import Registrar
from ingest_service.settings import IngestSettings
from ingest_service.staging import Refused, StoredFile, store_file

log = get_logger(__name__)


class BrokerUnavailable(ServiceUnavailable):
    """A job or event was not confirmed by RabbitMQ; the file is not accepted."""


class QueuedInstances:
    """Instance ids this process queued recently, so a duplicate arriving before results_service has
    applied the `queued` event does not queue the same instance twice (bounded, oldest forgotten first)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, instance_id: object) -> bool:
        return instance_id in self._ids

    def add(self, instance_id: str) -> None:
        self._ids[instance_id] = None
        self._ids.move_to_end(instance_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)


@dataclass
class Intake:
    """The files of one upload, taken one at a time; `files` holds their outcomes in order."""

    settings: IngestSettings
    store: BlobStore
    topology: Topology
    registrar: Registrar
    queued: QueuedInstances
    upload_id: str
    caller: Caller
    files: list[UploadedFile] = field(default_factory=list)

    @property
    def owner(self) -> str:
        """The uploader, who owns the upload and its instances."""
        return self.caller.user_id

    async def take(self, incoming: IncomingFile) -> UploadedFile:
        """Read, check and store one file; append and return its outcome."""
        index = len(self.files)
        if incoming.chunks is None:
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
        if registered.instance_id is not None and self._needs_job(registered):
            await self._queue(registered.instance_id, stored)
        return UploadedFile(
            name=name,
            sha256=stored.sha256,
            status=registered.status,
            instance_id=registered.instance_id,
            reason=registered.reason,
        )

    def _needs_job(self, registered: FileRegistered) -> bool:
        """New instances, and duplicates whose first job was never confirmed (still `received`)."""
        if registered.status is FileStatus.ACCEPTED:
            return True
        return (
            registered.status is FileStatus.DUPLICATE
            and registered.instance_status is InstanceStatus.RECEIVED
            and registered.instance_id not in self.queued
        )

    async def _register(self, registration: FileRegistration) -> FileRegistered:
        return await self.registrar.register(self.upload_id, registration, self.caller)

    async def _queue(self, instance_id: str, stored: StoredFile) -> None:
        """Publish the job, confirmed by the broker; then report it, so that the instance becomes `queued`."""
        job = ProcessJob(
            message_id=f"{instance_id}.job.{PIPELINE_VERSION}",
            instance_id=instance_id,
            upload_id=self.upload_id,
            owner=self.owner,
            sha256=stored.sha256,
            size=stored.size,
            sop_class_uid=stored.metadata.sop_class_uid,
            transfer_syntax_uid=stored.metadata.transfer_syntax_uid,
        )
        routing_key = JOB_LARGE if stored.size > self.settings.large_job_bytes else JOB_STANDARD
        try:
            await asyncio.wait_for(publish(self.topology.exchange, job, routing_key), self.settings.results_timeout)
        except BROKER_ERRORS as exc:
            raise BrokerUnavailable(
                f"RabbitMQ did not confirm the job of file {stored.sha256[:12]}… ({type(exc).__name__}); "
                "retry the files not yet accepted"
            ) from exc
        self.queued.add(instance_id)
        self.registrar.confirmed(instance_id)
        log.info("job_published", instance_id=instance_id, routing_key=routing_key, message_id=job.message_id)
