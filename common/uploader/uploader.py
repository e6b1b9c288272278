"""`Uploader`: send folders of DICOM files to a dicomflow server, safely, from a script or `dicomflow upload`.

    async with Uploader("https://dicomflow.example", token=token, concurrency=8) as up:
        summary = await up.upload([Path("scan")], atomic=False, wait=True)
    summary.exit_status  # 0 all on the server (and done), 1 something rejected or failed, 3 unreachable

A run walks the PATHs, hashes every file (streamed), asks the server which of those it holds already and
skips them (resume), then sends the rest: one file per `POST /api/uploads` request, `concurrency` in flight on
one connection pool, each streamed from disk and retried (`common.uploader.retrying`); or, `atomic`, all of
them in one zip built while it is sent, which the server registers whole or not at all. `wait` then follows
processing. The run's outcome is an `UploadSummary`, also when it stops early (the server unreachable, the
token refused): what got through is in it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from common.app.logs import get_logger
from common.schemas.lookup import LOOKUP_MAX_DIGESTS
from common.schemas.uploads import NOT_TAKEN_REASON, UploadedFile, UploadReceipt
from common.uploader.atomic_zip import ZIP_TYPE, entry_names, zip_chunks
from common.uploader.client import NotAuthorized, ServerClient, ServerError, problem_detail
from common.uploader.files import DiskSource, FileSource, LocalFile, collect
from common.uploader.follow import WaitTimedOut, follow
from common.uploader.progress import Progress
from common.uploader.resume import known_instances
from common.uploader.retrying import DEFAULT_MAX_RETRIES, RetryEvent, RetryPolicy, ServiceUnreachable
from common.uploader.summary import ON_SERVER, FileReport, Outcome, UploadSummary

log = get_logger("dicomflow.uploader")

DICOM_TYPE = "application/dicom"
DEFAULT_CONCURRENCY = 8
CONNECT_TIMEOUT = 15.0
READ_TIMEOUT = 300.0
"""Seconds without a byte from the server before a request counts as timed out (an atomic upload's answer
comes only after the server has read and checked every file)."""

FATAL = (ServiceUnreachable, NotAuthorized, ServerError)
"""Errors that stop a run: no further file could get through."""

Prepare = Callable[[Path], Awaitable[FileSource]]
"""Makes the bytes sent for a file: the file itself by default, or a copy with its tags rewritten."""


def content_disposition(name: str) -> str:
    """`attachment; filename=...` naming the file for the server (RFC 6266: `filename*` for non-ASCII names)."""
    if name.isascii() and name.isprintable():
        return 'attachment; filename="{}"'.format(name.replace("\\", "\\\\").replace('"', '\\"'))
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"


class Uploader:
    """One user's uploads to one server, over one connection pool; use as an async context manager."""

    def __init__(
        self,
        server: str,
        *,
        token: str | None = None,
        email: str | None = None,
        password: str | None = None,
        concurrency: int = DEFAULT_CONCURRENCY,
        max_retries: int = DEFAULT_MAX_RETRIES,
        policy: RetryPolicy | None = None,
        progress: Progress | None = None,
        prepare: Prepare | None = None,
        timeout: aiohttp.ClientTimeout | None = None,
    ) -> None:
        if token is None and (email is None or password is None):
            raise ValueError("give a token, or an e-mail and a password")
        self.server = server
        self.concurrency = max(1, concurrency)
        self.policy = policy or RetryPolicy(max_retries=max_retries)
        self.progress = progress or Progress()
        self.prepare = prepare
        self._token, self._email, self._password = token, email, password
        self._timeout = timeout or aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)
        self._session: aiohttp.ClientSession | None = None
        self._client: ServerClient | None = None

    @property
    def client(self) -> ServerClient:
        """The logged-in client (inside `async with`)."""
        if self._client is None:
            raise RuntimeError("use the Uploader inside `async with`")
        return self._client

    def on_retry(self, event: RetryEvent) -> None:
        """Count a retry of any call of the run (the progress shows them)."""
        self.progress.retried()

    async def __aenter__(self) -> Uploader:
        connector = aiohttp.TCPConnector(limit=self.concurrency + 2)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        self._client = ServerClient(self._session, self.server, self.policy, self._token, self.on_retry)
        if self._token is None:
            assert self._email is not None and self._password is not None
            try:
                await self._client.login(self._email, self._password)
            except BaseException:
                await self._session.close()
                raise
            finally:
                self._password = None
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    async def upload(
        self,
        paths: Sequence[Path],
        *,
        atomic: bool = False,
        wait: bool = False,
        wait_timeout: float | None = None,
    ) -> UploadSummary:
        """Send the files under `paths` (see the module); the run's summary, its `exit_status` set."""
        started = time.monotonic()
        files = await asyncio.to_thread(collect, paths)
        summary = UploadSummary(server=self.server, atomic=atomic, waited=wait, files=[])
        summary.files = [FileReport(path=str(f.path), name=f.name, size=f.size) for f in files]
        self.progress.start(len(files), sum(f.size for f in files))
        try:
            if atomic:
                sources = await self._prepare(files, summary.files, range(len(files)))
                to_send = await self._skip_known(summary.files, sources)
                if to_send:
                    await self._send_atomic(summary.files, sources, to_send)
            else:
                await self._send_each(files, summary.files)
            if wait:
                await follow(self.client, summary.files, concurrency=self.concurrency, timeout=wait_timeout)
        except ServiceUnreachable as exc:
            summary.unreachable = str(exc)
        except (NotAuthorized, ServerError, WaitTimedOut) as exc:
            summary.error = str(exc)
        summary.bytes_sent = self.progress.bytes_sent
        summary.retries = self.progress.retries
        summary.finish(time.monotonic() - started)
        _log_outcomes(summary)
        return summary

    async def _prepare(
        self, files: list[LocalFile], reports: list[FileReport], indexes: Iterable[int]
    ) -> dict[int, FileSource]:
        """The bytes to send of the files at `indexes`, and their SHA-256; a file that cannot be read or rewritten
        is rejected here."""
        gate = asyncio.Semaphore(self.concurrency)
        sources: dict[int, FileSource] = {}

        async def one(index: int, file: LocalFile) -> None:
            async with gate:
                try:
                    source = await self.prepare(file.path) if self.prepare else DiskSource(file.path, file.size)
                    reports[index].sha256 = await source.sha256()
                    reports[index].size = source.size
                    sources[index] = source
                except (ValueError, OSError) as exc:
                    reports[index].outcome, reports[index].reason = Outcome.REJECTED, f"not sent: {exc}"
                    self.progress.skipped(file.size)

        await asyncio.gather(*(one(i, files[i]) for i in indexes))
        return sources

    async def _skip_known(self, reports: list[FileReport], sources: dict[int, FileSource]) -> list[int]:
        """Mark the files the server holds already as skipped; the indexes of the others, to send."""
        digests = [reports[i].sha256 or "" for i in sorted(sources)]
        known = await known_instances(self.client, digests) if digests else {}
        to_send: list[int] = []
        for index in sorted(sources):
            report = reports[index]
            found = known.get(report.sha256 or "")
            if found is None:
                to_send.append(index)
                continue
            report.outcome, report.reason = Outcome.SKIPPED, "already on the server"
            self.progress.skipped(report.size)
            report.instance_id, report.upload_id, report.status = found.instance_id, found.upload_id, found.status
        return to_send

    async def _counted(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`chunks`, counted as sent as they go (again on a retry: they went out again)."""
        async for chunk in chunks:
            self.progress.sent_bytes(len(chunk))
            yield chunk

    async def _send_each(self, files: list[LocalFile], reports: list[FileReport]) -> None:
        """One request per file, `concurrency` in flight, while the next files are hashed and looked up in batches
        (so sending starts after the first batch, not after hashing the whole set). The first fatal error stops new
        files (those in flight finish) and is raised."""
        queue: asyncio.Queue[tuple[int, FileSource] | None] = asyncio.Queue(maxsize=4 * self.concurrency)
        failures: list[BaseException] = []

        async def produce() -> None:
            try:
                for batch in lookup_batches(len(files), first=2 * self.concurrency):
                    if failures:
                        return
                    ready = await self._prepare(files, reports, batch)
                    for index in await self._skip_known(reports, ready):
                        await queue.put((index, ready[index]))
            except FATAL as exc:
                failures.append(exc)
            finally:
                for _ in range(self.concurrency):
                    await queue.put(None)

        async def send() -> None:
            while (item := await queue.get()) is not None:
                if failures:
                    continue  # drain: the producer must never wait on a full queue nobody reads
                try:
                    await self._send_one(reports[item[0]], item[1])
                except FATAL as exc:
                    failures.append(exc)

        await asyncio.gather(produce(), *(send() for _ in range(self.concurrency)))
        if failures:
            raise failures[0]

    async def _send_one(self, report: FileReport, source: FileSource) -> None:
        headers = {"Content-Type": DICOM_TYPE, "Content-Disposition": content_disposition(report.name)}
        reply = await self.client.call(
            "POST", "/api/uploads", body=lambda: self._counted(source.chunks()), headers=headers
        )
        self.progress.file_done()
        body = _json_or_none(reply.body)
        if reply.status == 202:
            receipt = _receipt(reply.body)
            _apply(report, receipt.files[0], receipt.upload_id, 0)
            return
        files = body.get("files") if isinstance(body, dict) else None
        report.outcome, report.reason = Outcome.REJECTED, problem_detail(reply)
        if isinstance(files, list) and files:
            try:
                taken = UploadedFile.model_validate(files[0])
            except ValidationError:
                return
            _apply(report, taken, str(body.get("upload_id") or "") or None, 0)
            if taken.status == "rejected" and not taken.reason:
                report.reason = problem_detail(reply)

    async def _send_atomic(self, reports: list[FileReport], sources: dict[int, FileSource], to_send: list[int]) -> None:
        """All the files in one zip; registered whole (202) or not at all (a problem listing every file)."""
        names = entry_names([reports[i].name for i in to_send])
        entries = [(name, sources[i]) for name, i in zip(names, to_send, strict=True)]
        reply = await self.client.call(
            "POST",
            "/api/uploads",
            body=lambda: self._counted(zip_chunks(entries)),
            headers={"Content-Type": ZIP_TYPE},
            params={"atomic": "true"},
        )
        for _ in to_send:
            self.progress.file_done()
        if reply.status == 202:
            receipt = _receipt(reply.body)
            for position, (index, taken) in enumerate(zip(to_send, receipt.files, strict=False)):
                _apply(reports[index], taken, receipt.upload_id, position)
            return
        detail = problem_detail(reply)
        body = _json_or_none(reply.body)
        listed = body.get("files") if isinstance(body, dict) else None
        outcomes = listed if isinstance(listed, list) else []
        for position, index in enumerate(to_send):
            report = reports[index]
            item = outcomes[position] if position < len(outcomes) and isinstance(outcomes[position], dict) else {}
            reason = item.get("reason")
            if item.get("status") == "rejected" and reason != NOT_TAKEN_REASON:
                report.outcome, report.reason = Outcome.REJECTED, str(reason or detail)
            else:
                report.outcome = Outcome.NOT_SENT
                report.reason = f"not registered: {reason or detail}"


def lookup_batches(count: int, first: int) -> Iterator[range]:
    """Positions 0..count-1 in batches for the resume lookup: a small first one (sending starts soon), each next
    four times larger, up to the lookup's limit."""
    start, size = 0, max(1, first)
    while start < count:
        yield range(start, min(count, start + size))
        start += size
        size = min(size * 4, LOOKUP_MAX_DIGESTS)


def _log_outcomes(summary: UploadSummary) -> None:
    """The run in the log (which `--send-log-on-failure` sends): each file that did not get through, by position
    and digest (a file's name may carry a patient's), then the counts."""
    for position, report in enumerate(summary.files):
        if report.outcome not in ON_SERVER:
            log.info("file_" + report.outcome.value, position=position, sha256=report.sha256, reason=report.reason)
    log.info(
        "upload_sent",
        counts=summary.counts,
        upload_ids=len(summary.upload_ids),
        bytes_sent=summary.bytes_sent,
        retries=summary.retries,
        seconds=summary.seconds,
        unreachable=summary.unreachable,
        error=summary.error,
    )


def _json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _receipt(body: bytes) -> UploadReceipt:
    try:
        receipt = UploadReceipt.model_validate_json(body)
    except ValidationError as exc:
        raise ServerError(f"the upload's answer is not readable: {exc.errors()[0]['msg']}") from None
    if not receipt.files:
        raise ServerError("the upload's answer lists no file")
    return receipt


def _apply(report: FileReport, taken: UploadedFile, upload_id: str | None, index: int) -> None:
    """What the server said of one file, onto its report."""
    report.outcome = Outcome(taken.status.value)
    report.reason = taken.reason
    report.upload_id = upload_id
    report.index = index
    if taken.instance_id:
        report.instance_id = taken.instance_id
