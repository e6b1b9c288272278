"""The command line of tag rewriting: the options `dicomflow upload` adds, and the run's plan they make.

`add_tag_options(parser)` adds them; `plan_from_args(args, parser)` checks everything that can be checked before
anything is read or sent (keywords, templates, literal values against their VR, `--metadata-url`'s fields) and
turns a problem into a usage error (exit 2); `build_rewriter` then fetches the metadata, if any, and makes the
`TagRewriter` (a value the metadata makes invalid is a `TagRuleError`, exit 1).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from common.cli.support import positive_int
from common.uploader.metadata import BEARER_HEADER, MetadataSettings, fetch_metadata, fill_url, template_values
from common.uploader.retrying import RetryEvent, RetryPolicy
from common.uploader.tags.rewrite import TagRewriter
from common.uploader.tags.rules import TagRule, TagRuleError, merge_rules, parse_set_tag, read_mapping

SEND, DRY_RUN, VERIFY_ONLY = "send", "dry-run", "verify-only"


@dataclass(frozen=True)
class TagOptions:
    """What the command line asked of tags: the rules, the values templates read, where metadata comes from, and
    whether to send (`mode` is SEND, DRY_RUN or VERIFY_ONLY)."""

    rules: list[TagRule]
    sample_id: str | None
    attempt: int
    metadata_url: str | None
    metadata_header: str
    mode: str

    @property
    def context(self) -> dict[str, str]:
        """`sample_id` (when given) and `attempt`, as templates read them."""
        values = {"attempt": str(self.attempt)}
        if self.sample_id is not None:
            values["sample_id"] = self.sample_id
        return values

    @property
    def sends(self) -> bool:
        """False for a dry run or a verification: nothing is sent."""
        return self.mode == SEND


def add_tag_options(parser: argparse.ArgumentParser) -> None:
    """`--set-tag`, `--mapping`, `--sample-id`, `--attempt`, `--metadata-url`, `--metadata-key-header`,
    `--dry-run`, `--verify-only`."""
    group = parser.add_argument_group("tags from metadata (rewritten on streamed copies; originals never change)")
    group.add_argument(
        "--set-tag",
        action="append",
        default=[],
        metavar="KEYWORD=VALUE",
        help="set a DICOM tag (by keyword) in the copies sent; VALUE may use {sample_id}, {attempt}, metadata "
        "fields and the file's own tags, e.g. --set-tag 'PatientID={sample_id}-{attempt}'; repeatable; wins "
        "over --mapping",
    )
    group.add_argument(
        "--mapping",
        type=Path,
        metavar="FILE",
        help="a file of 'KEYWORD = template' lines (# comments) mapping metadata fields to tags; "
        "see samples/tag-mapping.example",
    )
    group.add_argument("--sample-id", metavar="ID", help="the sample's id: {sample_id} in templates and the URL")
    group.add_argument(
        "--attempt", type=positive_int, default=1, metavar="N", help="the acquisition's attempt number (default 1)"
    )
    group.add_argument(
        "--metadata-url",
        metavar="URL",
        help="fetch the sample's metadata (a JSON object) from this URL, which may use {sample_id} and "
        "{attempt}; API key from DICOMFLOW_METADATA_API_KEY",
    )
    group.add_argument(
        "--metadata-key-header",
        default=BEARER_HEADER,
        metavar="NAME",
        help="send the metadata API key as this header's bare value (default: Authorization: Bearer KEY)",
    )
    modes = group.add_mutually_exclusive_group()
    modes.add_argument(
        "--dry-run",
        dest="tag_mode",
        action="store_const",
        const=DRY_RUN,
        default=SEND,
        help="list every tag change of every file and send nothing",
    )
    modes.add_argument(
        "--verify-only",
        dest="tag_mode",
        action="store_const",
        const=VERIFY_ONLY,
        help="list the files whose tags disagree with the rules and send nothing (exit 1 if any)",
    )


def plan_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> TagOptions | None:
    """The checked options, or None when no tag rule was given. Every problem is `parser.error` (exit 2)."""
    try:
        return _plan(args)
    except (TagRuleError, ValueError) as e:
        parser.error(str(e))


def _plan(args: argparse.Namespace) -> TagOptions | None:
    """`plan_from_args` with ValueErrors."""
    rules_given = bool(args.set_tag) or args.mapping is not None
    if not rules_given:
        for flag, given in (("--metadata-url", args.metadata_url), ("--dry-run/--verify-only", args.tag_mode != SEND)):
            if given:
                raise ValueError(f"{flag} needs tag rules: give --mapping FILE or --set-tag KEYWORD=VALUE")
        return None
    mapped = read_mapping(args.mapping) if args.mapping is not None else []
    rules = merge_rules(mapped, [parse_set_tag(word) for word in args.set_tag])
    options = TagOptions(
        rules, args.sample_id, args.attempt, args.metadata_url, args.metadata_key_header, args.tag_mode
    )
    if options.metadata_url is not None:
        fill_url(options.metadata_url, options.context)
        known = options.context
        for rule in rules:
            if rule.template.fields <= known.keys():
                TagRewriter([rule], known)
    else:
        try:
            TagRewriter(rules, options.context)
        except TagRuleError as e:
            raise TagRuleError(f"{e} (no --metadata-url was given)" if "metadata field" in str(e) else str(e)) from None
    return options


async def build_rewriter(
    options: TagOptions,
    session: aiohttp.ClientSession,
    policy: RetryPolicy,
    *,
    settings: MetadataSettings | None = None,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> TagRewriter:
    """The run's rewriter: the metadata fetched (ServiceUnreachable, MetadataError) and every template checked
    against it (TagRuleError). `sample_id` and `attempt` from the command line win over metadata fields."""
    values = options.context
    if options.metadata_url is not None:
        url = fill_url(options.metadata_url, values)
        metadata = await fetch_metadata(
            session,
            url,
            policy=policy,
            settings=settings or MetadataSettings(),
            header=options.metadata_header,
            on_retry=on_retry,
        )
        values = {**template_values(metadata), **values}
    return TagRewriter(options.rules, values)
