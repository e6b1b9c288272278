"""The one rule for text a client sends: no control characters, checked where the text enters.

Names, filters and ids of bodies and query parameters are validated by pydantic models; each
string field of those models carries `Printable` (with its own length bound, the length of the
column it is compared with or written to), so a NUL byte, which PostgreSQL refuses in text and
JSON, or another control character is a 422 naming the field, never a database error (a 500).
The JSON schema of such a field documents the rule as a `pattern`, so clients and schema-driven
tests know it.

:func:`shown` is the other half: a value that failed its check may still be echoed in a problem
or written to the audit trail, escaped and cut short.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

# ECMA-262 and Python regex alike: C0 controls (NUL included), DEL and C1 controls.
PRINTABLE_PATTERN = r"^[^\u0000-\u001f\u007f-\u009f]*$"
SHOWN_MAX = 64


def control_character(value: str) -> str | None:
    """The first control character of `value` (Unicode category Cc), if any."""
    return next((char for char in value if unicodedata.category(char) == "Cc"), None)


def refuse_control_characters(value: str) -> str:
    """`value` unchanged, or a ValueError that names the character (a pydantic validator)."""
    char = control_character(value)
    if char is not None:
        raise ValueError(f"must not contain control characters such as U+{ord(char):04X}")
    return value


@dataclass(frozen=True, slots=True)
class Printable:
    """Pydantic annotation of a string field: control characters are refused, the rule is documented."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(refuse_control_characters, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault("pattern", PRINTABLE_PATTERN)
        return json_schema


PRINTABLE = Printable()
Text = Annotated[str, PRINTABLE]
"""A string without control characters; give its length bounds with `Field` where it is used."""


def shown(value: str, max_length: int = SHOWN_MAX) -> str:
    """`value` safe to echo or store whatever it holds: control characters escaped, cut to `max_length`."""
    escaped = "".join(
        char if unicodedata.category(char) != "Cc" else f"\\x{ord(char):02x}" for char in value[: max_length + 1]
    )
    return escaped if len(escaped) <= max_length else escaped[: max_length - 1] + "…"
