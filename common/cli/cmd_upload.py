"""`dicomflow upload PATH...`: send folders (recursively) or files to a dicomflow server, safely.

Login with a token (`DICOMFLOW_TOKEN`) or `--email`, whose password comes from `DICOMFLOW_PASSWORD` or a prompt,
never from the command line. The run itself is `common.uploader.Uploader`'s (resume, retries, `--atomic`,
`--wait`); tags from metadata are `common.uploader.tags`', the analysis trigger `common.uploader.trigger`'s.
Exit status: 0 every file on the server (and done, with --wait); 1 a file rejected or failed; 2 usage;
3 the server or a metadata/trigger service could not be reached after the retries.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from common.app.logs import get_logger
from common.cli.support import add_json_flag, non_negative_float, positive_int, print_json
from common.uploader.client import NotAuthorized, ServerError
from common.uploader.client_logs import send_log
from common.uploader.files import collect
from common.uploader.metadata import MetadataError
from common.uploader.progress import progress_for
from common.uploader.retrying import DEFAULT_MAX_RETRIES, RetryPolicy, ServiceUnreachable
from common.uploader.run_log import configure_run_logging, default_log_file
from common.uploader.summary import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, UploadSummary, summary_lines
from common.uploader.tags.options import TagOptions, add_tag_options, build_rewriter, plan_from_args
from common.uploader.tags.report import run_check_mode
from common.uploader.tags.rules import TagRuleError
from common.uploader.trigger import (
    TriggerError,
    TriggerInstance,
    TriggerOptions,
    TriggerRequest,
    TriggerSettings,
    add_trigger_options,
    send_trigger,
    trigger_from_args,
)
from common.uploader.uploader import DEFAULT_CONCURRENCY, Uploader

log = get_logger("dicomflow.cli.upload")

TOKEN_ENV = "DICOMFLOW_TOKEN"  # noqa: S105 (the variable's name, not a token)
PASSWORD_ENV = "DICOMFLOW_PASSWORD"  # noqa: S105 (the variable's name, not a password)
SERVER_ENV = "DICOMFLOW_SERVER"
DEFAULT_SERVER = "http://127.0.0.1:8080"


@dataclass(frozen=True)
class Credentials:
    """A token, or an e-mail and its password."""

    token: str | None = None
    email: str | None = None
    password: str | None = None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `upload`."""
    parser = subparsers.add_parser(
        "upload",
        help="send folders or files of DICOM images to a dicomflow server (resumable, retried, optionally atomic)",
        description="Send folders (recursively) or files to a dicomflow server. Files the server already holds "
        "for you are skipped, so a re-run after a failure sends only the rest. Login: DICOMFLOW_TOKEN, or "
        "--email with the password from DICOMFLOW_PASSWORD or a prompt. Exit status: 0 all files on the "
        "server (and done, with --wait), 1 some rejected or failed, 2 usage, 3 a service unreachable after "
        "the retries.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a folder (sent recursively) or a file")
    parser.add_argument(
        "--server",
        default=os.environ.get(SERVER_ENV, DEFAULT_SERVER),
        metavar="URL",
        help=f"the dicomflow server (default ${SERVER_ENV} or {DEFAULT_SERVER})",
    )
    parser.add_argument("--email", help=f"log in as this user (password from ${PASSWORD_ENV} or a prompt)")
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"requests in flight (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--max-retries",
        type=int,
        choices=range(0, 101),
        default=DEFAULT_MAX_RETRIES,
        metavar="N",
        help=f"retries per request on connection errors, timeouts, 5xx and 429 (default {DEFAULT_MAX_RETRIES})",
    )
    parser.add_argument(
        "--atomic",
        action="store_true",
        help="send every file in one zip that the server registers whole or not at all",
    )
    parser.add_argument("--wait", action="store_true", help="follow processing until every file is done or failed")
    parser.add_argument(
        "--wait-timeout",
        type=non_negative_float,
        default=3600.0,
        metavar="SECONDS",
        help="give up waiting after this long (default 3600; exit 1)",
    )
    add_json_flag(parser)
    parser.add_argument(
        "--log-file",
        type=Path,
        metavar="FILE",
        help="append the run's log (JSON lines) here (default <sample_id>-<attempt>.log with --sample-id)",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="show every log line on the console")
    parser.add_argument(
        "--send-log-on-failure",
        action="store_true",
        help="when the run fails, send its log to the server (POST /api/client-logs) and print its id",
    )
    add_tag_options(parser)
    add_trigger_options(parser)
    parser.set_defaults(handler=lambda args: run_upload(args, parser))


def credentials(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Credentials:
    """The token or the e-mail and password; a usage error (exit 2) when neither can be had."""
    if args.email:
        password = os.environ.get(PASSWORD_ENV)
        if not password:
            if not sys.stdin.isatty():
                parser.error(f"--email needs the password in ${PASSWORD_ENV} when there is no terminal to ask on")
            password = getpass.getpass(f"Password for {args.email}: ")
        return Credentials(email=args.email, password=password)
    token = os.environ.get(TOKEN_ENV, "").strip()
    if not token:
        parser.error(f"log in: set ${TOKEN_ENV}, or give --email (password from ${PASSWORD_ENV} or a prompt)")
    return Credentials(token=token)


def run_upload(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """The command: check the options, set up the log, run, print, exit status."""
    if not args.server.startswith(("http://", "https://")):
        parser.error(f"--server must be an http:// or https:// URL, got {args.server!r}")
    tags = plan_from_args(args, parser)
    trigger = trigger_from_args(args, parser)
    sends = tags is None or tags.sends
    login = credentials(args, parser) if sends else Credentials()
    log_file = args.log_file or default_log_file(args.sample_id, args.attempt)
    temporary = None
    if log_file is None and args.send_log_on_failure:
        temporary = Path(tempfile.mkstemp(prefix="dicomflow-upload-", suffix=".log")[1])
        log_file = temporary
    handle = configure_run_logging(log_file, verbose=args.verbose)
    try:
        log.info("upload_started", server=args.server, paths=[str(p) for p in args.paths], atomic=args.atomic)
        return asyncio.run(_run(args, login, tags, trigger, log_file))
    finally:
        if handle is not None:
            handle.close()
        if temporary is not None:
            temporary.unlink(missing_ok=True)


async def _run(
    args: argparse.Namespace,
    login: Credentials,
    tags: TagOptions | None,
    trigger: TriggerOptions | None,
    log_file: Path | None,
) -> int:
    policy = RetryPolicy(max_retries=args.max_retries)
    if tags is not None and not tags.sends:
        return await _check_tags(args, tags, policy)
    progress = progress_for(quiet=args.json)
    summary: UploadSummary | None = None
    try:
        async with Uploader(
            args.server,
            token=login.token,
            email=login.email,
            password=login.password,
            concurrency=args.concurrency,
            policy=policy,
            progress=progress,
        ) as up:
            if tags is not None:
                up.prepare = (await build_rewriter(tags, up.client.session, policy, on_retry=up.on_retry)).prepare
            with progress:
                summary = await up.upload(
                    args.paths, atomic=args.atomic, wait=args.wait, wait_timeout=args.wait_timeout
                )
            server_down = summary.unreachable is not None
            if trigger is not None and summary.exit_status == EXIT_OK:
                try:
                    await _trigger(up, trigger, tags, summary, policy)
                except ServiceUnreachable as exc:  # the analysis service's: the server can still take the log
                    log.error("service_unreachable", service=exc.service, reason=exc.reason)
                    summary.unreachable = str(exc)
                except TriggerError as exc:
                    log.error("trigger_failed", reason=str(exc))
                    summary.error = str(exc)
            if args.send_log_on_failure and log_file is not None and not server_down:
                await _send_log_if_failed(up, log_file, summary)
    except ServiceUnreachable as exc:
        log.error("service_unreachable", service=exc.service, reason=exc.reason)
        if summary is None:
            print(str(exc), file=sys.stderr)
            return EXIT_UNREACHABLE
        summary.unreachable = str(exc)
    except (NotAuthorized, ServerError, MetadataError, TagRuleError, TriggerError) as exc:
        log.error("upload_failed", error=type(exc).__name__, reason=str(exc))
        if summary is None:
            print(str(exc), file=sys.stderr)
            return EXIT_FAILED
        summary.error = str(exc)
    return _report(args, summary)


def _report(args: argparse.Namespace, summary: UploadSummary) -> int:
    summary.exit_status = summary.finish(summary.seconds).exit_status
    log.info("upload_finished", exit_status=summary.exit_status, counts=summary.counts, retries=summary.retries)
    if args.json:
        print_json(summary.model_dump(mode="json"))
    else:
        print("\n".join(summary_lines(summary)))
    return summary.exit_status


async def _check_tags(args: argparse.Namespace, tags: TagOptions, policy: RetryPolicy) -> int:
    """`--dry-run` / `--verify-only`: no login, nothing sent; the metadata is fetched if asked for."""
    files = await asyncio.to_thread(collect, args.paths)
    try:
        async with aiohttp.ClientSession() as session:
            rewriter = await build_rewriter(tags, session, policy)
    except ServiceUnreachable as exc:
        log.error("service_unreachable", service=exc.service, reason=exc.reason)
        print(str(exc), file=sys.stderr)
        return EXIT_UNREACHABLE
    return await run_check_mode(tags, rewriter, [f.path for f in files], as_json=args.json)


async def _trigger(
    up: Uploader, trigger: TriggerOptions, tags: TagOptions | None, summary: UploadSummary, policy: RetryPolicy
) -> None:
    """POST the run's instances to the analysis service (every one is done: the exit status says so)."""
    upload_ids = summary.upload_ids or sorted({f.upload_id for f in summary.files if f.upload_id})
    request = TriggerRequest(
        upload_id=upload_ids[0] if upload_ids else "",
        upload_ids=upload_ids,
        instances=[
            TriggerInstance(instance_id=f.instance_id, sha256=f.sha256 or "", name=f.name, status=f.status or "")
            for f in summary.files
            if f.instance_id
        ],
        sample_id=tags.sample_id if tags else None,
        attempt=tags.attempt if tags else None,
    )
    await send_trigger(
        up.client.session, trigger.url, request, policy=policy, settings=TriggerSettings(), header=trigger.header
    )
    log.info("analysis_triggered", url=trigger.url, instances=len(request.instances))


async def _send_log_if_failed(up: Uploader, log_file: Path, summary: UploadSummary) -> None:
    """`--send-log-on-failure`: the log goes to the server when the run failed (a log that cannot be sent is
    reported, and does not change the exit status)."""
    if summary.finish(summary.seconds).exit_status == EXIT_OK:
        return
    upload_id = summary.upload_ids[0] if summary.upload_ids else None
    try:
        created = await send_log(up.client, log_file, upload_id)
    except (ServiceUnreachable, NotAuthorized, ServerError, OSError) as exc:
        log.warning("client_log_not_sent", reason=str(exc))
        return
    summary.client_log_id = created.id
    log.info("client_log_sent", id=created.id, size=created.size)
