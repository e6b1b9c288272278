"""A sample's metadata from the lab's own system (`--metadata-url`): one JSON object, fetched with the uploader's
retries, whose top-level fields fill the tag templates.

The URL may hold `{sample_id}` and `{attempt}` (URL-quoted when filled in). The API key comes from the
environment, `DICOMFLOW_METADATA_API_KEY`, never from the command line; it is sent as `Authorization: Bearer
<key>`, or as the bare key in the header `--metadata-key-header` names (e.g. `X-API-Key`). A connection error, a
timeout, a `5xx` or a `429` is retried (`common.uploader.retrying`); when the retries run out the call raises
`ServiceUnreachable` (exit 3). Any other answer than `200` with a JSON object is a `MetadataError` (exit 1).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from common.uploader.retrying import RetryEvent, RetryPolicy, send
from common.uploader.tags.template import TemplateError, parse_template

BEARER_HEADER = "Authorization"
URL_FIELDS = frozenset({"sample_id", "attempt"})
_SNIPPET = 200


class MetadataSettings(BaseSettings):
    """The metadata service's API key, from `DICOMFLOW_METADATA_API_KEY` (optional: some lab systems need none)."""

    model_config = SettingsConfigDict(env_prefix="DICOMFLOW_METADATA_", extra="ignore", frozen=True)

    api_key: SecretStr | None = None


class MetadataError(ValueError):
    """The metadata service answered, but not with a sample's metadata; the message says what it answered."""


def auth_headers(api_key: SecretStr | None, header: str = BEARER_HEADER) -> dict[str, str]:
    """The header carrying an API key: `Authorization: Bearer <key>`, or `<header>: <key>` for any other name."""
    if api_key is None:
        return {}
    key = api_key.get_secret_value()
    return {header: f"Bearer {key}" if header.lower() == BEARER_HEADER.lower() else key}


def fill_url(template: str, values: dict[str, str]) -> str:
    """`template` with `{sample_id}` / `{attempt}` replaced by their URL-quoted values; ValueError naming a field
    that is not one of them or has no value (usage errors, found before anything is sent)."""
    try:
        parsed = parse_template(template)
    except TemplateError as e:
        raise ValueError(f"--metadata-url {e}") from None
    unknown = parsed.fields - URL_FIELDS
    if unknown:
        raise ValueError(f"--metadata-url may use only {{sample_id}} and {{attempt}}, not {{{min(unknown)}}}")
    missing = parsed.fields - values.keys()
    if missing:
        raise ValueError(f"--metadata-url uses {{{min(missing)}}}: give --{min(missing).replace('_', '-')}")
    return parsed.render({name: quote(value, safe="") for name, value in values.items()})


async def fetch_metadata(
    session: aiohttp.ClientSession,
    url: str,
    *,
    policy: RetryPolicy,
    settings: MetadataSettings,
    header: str = BEARER_HEADER,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> dict[str, Any]:
    """The JSON object at `url`. Raises ServiceUnreachable after the retries, MetadataError for any other status
    than 200, a body that is not JSON, or JSON that is not an object."""
    headers = {"Accept": "application/json", **auth_headers(settings.api_key, header)}
    reply = await send(
        session, "GET", url, service="metadata service", policy=policy, headers=headers, on_retry=on_retry
    )
    snippet = reply.body[:_SNIPPET].decode("utf-8", "replace")
    if reply.status != 200:
        raise MetadataError(f"the metadata service answered {reply.status} for {url}: {snippet!r}")
    try:
        document = json.loads(reply.body)
    except ValueError:
        raise MetadataError(f"the metadata service's answer for {url} is not JSON: {snippet!r}") from None
    if not isinstance(document, dict):
        raise MetadataError(f"the metadata service's answer for {url} is JSON but not an object: {snippet!r}")
    return document


def template_values(metadata: dict[str, Any]) -> dict[str, str]:
    """The fields a template can read: top-level text, numbers (as JSON writes them) and booleans (`true`,
    `false`); nested objects, lists and nulls are left out."""
    values: dict[str, str] = {}
    for name, value in metadata.items():
        if isinstance(value, str):
            values[name] = value
        elif isinstance(value, bool | int | float):
            values[name] = json.dumps(value)
    return values
