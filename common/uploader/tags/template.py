"""The small template language of tag values: `{name}` fields filled from a fixed mapping, nothing else.

A value such as `{sample_id}-{attempt}` or `{StudyDate}` is parsed once with `string.Formatter` (so `{{` and `}}`
are literal braces, as in `str.format`), and every field must be a bare name: no attribute or index access
(`{a.b}`, `{a[0]}`), no conversion (`{a!r}`), no format spec (`{a:>10}`), no positional field (`{}`, `{0}`).
Rendering looks names up in a plain mapping of strings, so a template can read only what the caller put there.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class TemplateError(ValueError):
    """A template is malformed or asks for something other than a bare name."""


class MissingField(TemplateError):
    """A field of a template has no value in the mapping it is rendered with."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no value for {{{name}}}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and field names, in order (`parts` holds (literal, field or None))."""

    source: str
    parts: tuple[tuple[str, str | None], ...]

    @property
    def fields(self) -> frozenset[str]:
        """Every name the template reads."""
        return frozenset(name for _, name in self.parts if name is not None)

    def render(self, values: Mapping[str, str]) -> str:
        """The text with each field replaced by `values[name]`; MissingField for a name not in `values`."""
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is not None:
                if name not in values:
                    raise MissingField(name)
                out.append(values[name])
        return "".join(out)


def parse_template(text: str) -> Template:
    """Parse `text`; TemplateError naming the first thing that is not a literal or a bare `{name}`."""
    parts: list[tuple[str, str | None]] = []
    try:
        pieces = list(string.Formatter().parse(text))
    except ValueError as e:  # a lone "{" or "}"
        raise TemplateError(f"{text!r}: {e} (write {{{{ and }}}} for literal braces)") from None
    for literal, field, spec, conversion in pieces:
        if field is None:
            parts.append((literal, None))
            continue
        if conversion is not None or spec:
            shown = field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            raise TemplateError(f"{text!r}: {{{shown}}} is not allowed: a field is a bare name such as {{sample_id}}")
        if not _NAME.fullmatch(field):
            raise TemplateError(
                f"{text!r}: {{{field}}} is not allowed: a field is a bare name such as {{sample_id}} "
                "(no attribute, index or position)"
            )
        parts.append((literal, field))
    return Template(text, tuple(parts))
