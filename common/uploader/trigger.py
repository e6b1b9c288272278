"""Start the analysis (`--trigger-url`): once every instance of the run is `done`, POST the upload and its
instances to a third-party analysis service, with the uploader's retries.

The body is a `TriggerRequest`. The API key comes from `DICOMFLOW_TRIGGER_API_KEY`, sent as `Authorization:
Bearer <key>` or in the header `--trigger-key-header` names. A retried POST may reach the service twice, so each
request carries an `Idempotency-Key` (the SHA-256 of its body) for a service that deduplicates. The trigger
needs the final statuses, so `--trigger-url` implies `--wait`; it is never sent with `--dry-run` or
`--verify-only`, nor when an instance ended other than `done` (the run then exits 1 without triggering).
Connection errors, timeouts, `5xx` and `429` are retried, then `ServiceUnreachable` (exit 3); any other answer
than `2xx` is a `TriggerError` (exit 1).
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.uploader.metadata import BEARER_HEADER, auth_headers
from common.uploader.retrying import Reply, RetryEvent, RetryPolicy, send

DONE = "done"
_SNIPPET = 200


class TriggerSettings(BaseSettings):
    """The analysis service's API key, from `DICOMFLOW_TRIGGER_API_KEY`."""

    model_config = SettingsConfigDict(env_prefix="DICOMFLOW_TRIGGER_", extra="ignore", frozen=True)

    api_key: SecretStr | None = None


class TriggerInstance(BaseModel):
    """One instance of the run, as the analysis service sees it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    instance_id: str
    sha256: str
    name: str
    status: str


class TriggerRequest(BaseModel):
    """The body POSTed to `--trigger-url`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upload_id: str
    instances: list[TriggerInstance]
    upload_ids: list[str] = Field(default_factory=list)
    """Every upload of the run when its files went in several (one request per file); `upload_id` is the first."""
    sample_id: str | None = None
    attempt: int | None = None

    @property
    def not_done(self) -> list[TriggerInstance]:
        """The instances that did not end `done`: the trigger is sent only when there are none."""
        return [instance for instance in self.instances if instance.status != DONE]


class TriggerError(ValueError):
    """The trigger was not sent (an instance is not done) or the analysis service refused it."""


async def send_trigger(
    session: aiohttp.ClientSession,
    url: str,
    request: TriggerRequest,
    *,
    policy: RetryPolicy,
    settings: TriggerSettings,
    header: str = BEARER_HEADER,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> Reply:
    """POST `request` to `url` and return the service's `2xx` answer. Raises TriggerError when an instance is not
    done (nothing is sent) or the service answers another status, ServiceUnreachable after the retries."""
    if request.not_done:
        names = ", ".join(f"{i.name} ({i.status})" for i in request.not_done[:5])
        raise TriggerError(f"analysis not triggered: {len(request.not_done)} instance(s) not done: {names}")
    body = request.model_dump_json()
    headers = {
        "Content-Type": "application/json",
        "Idempotency-Key": hashlib.sha256(body.encode()).hexdigest(),
        **auth_headers(settings.api_key, header),
    }
    reply = await send(
        session,
        "POST",
        url,
        service="analysis service",
        policy=policy,
        body=lambda: body,
        headers=headers,
        on_retry=on_retry,
    )
    if not 200 <= reply.status < 300:
        snippet = reply.body[:_SNIPPET].decode("utf-8", "replace")
        raise TriggerError(f"the analysis service refused the trigger: {reply.status} {snippet!r}")
    return reply


@dataclass(frozen=True)
class TriggerOptions:
    """Where to send the trigger and in which header its API key goes."""

    url: str
    header: str = BEARER_HEADER


def add_trigger_options(parser: argparse.ArgumentParser) -> None:
    """`--trigger-url` and `--trigger-key-header`."""
    group = parser.add_argument_group("analysis trigger")
    group.add_argument(
        "--trigger-url",
        metavar="URL",
        help="once every file is done, POST the upload id and its instances to this analysis service (implies "
        "--wait); API key from DICOMFLOW_TRIGGER_API_KEY",
    )
    group.add_argument(
        "--trigger-key-header",
        default=BEARER_HEADER,
        metavar="NAME",
        help="send the trigger API key as this header's bare value (default: Authorization: Bearer KEY)",
    )


def trigger_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TriggerOptions | None:
    """The trigger's options, or None without `--trigger-url`. Sets `args.wait` (the trigger needs every file's
    final status); with `--dry-run` or `--verify-only` (nothing is sent) it is a usage error (exit 2)."""
    if args.trigger_url is None:
        return None
    if getattr(args, "tag_mode", "send") != "send":
        parser.error("--trigger-url cannot be used with --dry-run or --verify-only: nothing is sent")
    if not args.trigger_url.startswith(("http://", "https://")):
        parser.error(f"--trigger-url must be an http:// or https:// URL, got {args.trigger_url!r}")
    args.wait = True
    return TriggerOptions(args.trigger_url, args.trigger_key_header)
