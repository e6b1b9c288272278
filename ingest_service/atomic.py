"""All-or-nothing uploads (`POST /api/uploads?atomic=true`): every file is taken, or none.

Each file is read, validated and sealed into the blob store's `tmp/` as it arrives (`staging.stage_file`,
the same validation and sealing as any upload), but nothing is committed, registered or published while
the body is read. At the end:

- if any file was rejected (not DICOM, truncated, empty, too large, an unsafe or corrupt zip entry), every
  staged file is discarded and the upload is a 422 problem whose `files` lists every file, the rejected ones
  with their reason and the valid ones with `NOT_TAKEN_REASON`; no row, no blob, no job;
- otherwise every blob is committed, every file registered by ONE call, ONE transaction of results_service
  (`Registrar.register_all`), and the new instances' jobs are published through `Intake._queue`, as for any
  upload. A file the owner already holds is a `duplicate`, not a rejection.

results_service failing before its commit is a 503 with nothing registered. A job not confirmed after the
commit is a 503 too, listing the registered files; those instances stay `received` until the reconciler
publishes their jobs (the guarantee every upload has). A commit of blobs cut short (disk full) leaves the
blobs committed so far without a row: content-addressed, they are reused by the next upload of those bytes.

Disk: an upload's files stay staged until its end, so it holds at most its body's plaintext in `tmp/`
(`UPLOAD_MAX_BYTES`); a zip archive is itself staged while its entries are, so at most `UPLOAD_MAX_BYTES` +
`ZIP_MAX_TOTAL_BYTES` (sealing adds about 0.03%). The archive is discarded before the entries are committed.
Staged files left by a crash are swept at start-up, as for every upload. At most `ATOMIC_MAX_FILES` files.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from common.app.logs import get_logger
from common.app.problems import PayloadTooLarge, Unprocessable
from common.messaging.jobs import wait_publishable
from common.schemas.instances import FileRegistration, FileStatus
from common.schemas.registrations import ATOMIC_MAX_FILES
from common.schemas.uploads import NOT_TAKEN_REASON, UploadedFile
from ingest_service.intake import Intake
from ingest_service.parts import IncomingFile
from ingest_service.staging import Refused, StagedDicom, stage_file

log = get_logger(__name__)

PUBLISH_CONCURRENCY = 32
"""Jobs of one upload waiting for their confirm at once (each is confirmed before the 202, as for any upload)."""


class UploadRejected(Unprocessable):
    """An all-or-nothing upload holds a rejected file: nothing of it was kept."""


@dataclass
class _Held:
    """One file of the upload: staged, or the outcome that rejects it."""

    name: str
    staged: StagedDicom | None = None
    rejection: UploadedFile | None = None


@dataclass
class AtomicIntake(Intake):
    """The files of one all-or-nothing upload: staged by `take`, then kept whole or dropped whole by `finish`.

    `files` stays empty until `finish`, since nothing is taken before: a problem on the way (413, 400, 503)
    lists no file. `discard` (always called at the end of the request) removes what is still staged.
    """

    held: list[_Held] = field(default_factory=list)

    async def take(self, incoming: IncomingFile) -> UploadedFile:
        """Stage one file; its provisional outcome (`accepted` means valid, pending the others)."""
        if len(self.held) >= ATOMIC_MAX_FILES:
            raise PayloadTooLarge(f"An all-or-nothing upload holds at most {ATOMIC_MAX_FILES} files.")
        # While the broker takes no jobs, nothing is staged: a 503 with Retry-After before anything is written.
        await wait_publishable(self.topology.exchange, self.settings.broker_blocked_wait)
        held = await self._stage(incoming)
        self.held.append(held)
        outcome = held.rejection or UploadedFile(
            name=held.name, sha256=held.staged.staged.sha256 if held.staged else None, status=FileStatus.ACCEPTED
        )
        log.info(
            "upload_file_staged",
            upload_id=self.upload_id,
            index=len(self.held) - 1,
            status=outcome.status,
            reason=outcome.reason,
        )
        return outcome

    async def _stage(self, incoming: IncomingFile) -> _Held:
        if incoming.chunks is None:
            reason = incoming.reason or "refused"
            return _Held(incoming.name, rejection=_rejected(incoming.name, reason))
        try:
            staged = await stage_file(
                self.store,
                incoming.chunks,
                max_bytes=incoming.max_bytes,
                memory_limit=self.settings.ingest_memory_file_bytes,
            )
        except Refused as exc:
            return _Held(incoming.name, rejection=_rejected(incoming.name, exc.reason, exc.sha256))
        return _Held(incoming.name, staged=staged)

    async def finish(self) -> None:
        """Keep every file (commit, register in one transaction, publish the jobs) or, if one was rejected, none:
        UploadRejected (422) with every file's outcome in `files`."""
        if not self.held:
            return
        rejected = sum(1 for held in self.held if held.staged is None)
        if rejected:
            self.files = [held.rejection or _rejected(held.name, NOT_TAKEN_REASON, _sha(held)) for held in self.held]
            await self.discard()
            raise UploadRejected(
                f"{rejected} of the {len(self.held)} files are rejected, so none was taken (all-or-nothing upload); "
                "`files` gives each file's reason."
            )
        await wait_publishable(self.topology.exchange, self.settings.broker_blocked_wait)
        staged = await self._commit()
        registrations = [
            FileRegistration(
                index=index,
                name=held.name,
                owner=self.owner,
                sha256=dicom.staged.sha256,
                size=dicom.staged.size,
                outcome=FileStatus.ACCEPTED,
                dicom=dicom.metadata,
            )
            for index, (held, dicom) in enumerate(zip(self.held, staged, strict=True))
        ]
        answers = await self.registrar.register_all(self.upload_id, registrations, self.caller)
        self.registered_files = len(answers)
        self.files = [
            UploadedFile(
                name=registration.name,
                sha256=registration.sha256,
                status=answer.status,
                instance_id=answer.instance_id,
                reason=answer.reason,
            )
            for registration, answer in zip(registrations, answers, strict=True)
        ]
        await self._publish(
            [
                (answer.instance_id, dicom)
                for answer, dicom in zip(answers, staged, strict=True)
                if answer.status is FileStatus.ACCEPTED and answer.instance_id is not None
            ]
        )

    async def _commit(self) -> list[StagedDicom]:
        """Commit every staged blob, in order; the files committed. On a failure the files not yet committed stay
        held, for `discard`."""
        committed: list[StagedDicom] = []
        for held in self.held:
            assert held.staged is not None
            await self.store.commit(held.staged.staged)
            committed.append(held.staged)
            held.staged = None
        return committed

    async def _publish(self, jobs: list[tuple[str, StagedDicom]]) -> None:
        """Publish the new instances' jobs, PUBLISH_CONCURRENCY at a time; the first failure is raised once all
        have settled (the registrations are committed: an instance whose job failed waits for the reconciler)."""
        slots = asyncio.Semaphore(PUBLISH_CONCURRENCY)

        async def publish(instance_id: str, dicom: StagedDicom) -> None:
            async with slots:
                await self._queue(instance_id, dicom.stored)

        outcomes = await asyncio.gather(*(publish(i, d) for i, d in jobs), return_exceptions=True)
        failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
        if failures:
            raise failures[0]

    async def discard(self) -> None:
        """Remove every file still staged (a rejected upload, a problem or a cancelled request)."""
        for held in self.held:
            if held.staged is not None:
                staged, held.staged = held.staged, None
                await self.store.discard(staged.staged)


def _rejected(name: str, reason: str, sha256: str | None = None) -> UploadedFile:
    return UploadedFile(name=name, sha256=sha256, status=FileStatus.REJECTED, reason=reason)


def _sha(held: _Held) -> str | None:
    return held.staged.staged.sha256 if held.staged is not None else None
