"""Which tag gets which value: `KEYWORD=template` rules from `--set-tag` and from the user's mapping file, and
the check of a value against its tag's VR.

Only tags a value written as text can set are accepted: a keyword of pydicom's data dictionary with a single,
textual or numeric VR, outside the file meta group (0002), before the pixel data (group 7FE0 onwards), and not
Specific Character Set (which would change how every other text of the file reads).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import config
from pydicom.charset import convert_encodings
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.valuerep import validate_value

from common.uploader.tags.template import Template, TemplateError, parse_template

_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_INT_VRS = frozenset({"US", "SS", "UL", "SL", "UV", "SV"})
_FLOAT_VRS = frozenset({"FL", "FD"})
_TEXT_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_CHARSET_VRS = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_SINGLE_VALUED_VRS = frozenset({"LT", "ST", "UT", "UR"})
_SPECIFIC_CHARACTER_SET = 0x00080005
_FIRST_PIXEL_TAG = 0x7FE00000
_SOP_TO_META = {0x00080016: "MediaStorageSOPClassUID", 0x00080018: "MediaStorageSOPInstanceUID"}


class TagRuleError(ValueError):
    """A rule cannot be used: unknown keyword, a tag that cannot be set from text, a bad template or value."""


@dataclass(frozen=True, slots=True)
class TagRule:
    """`keyword = template`, with the tag and VR it resolves to and where it was written (for messages)."""

    keyword: str
    tag: int
    vr: str
    template: Template
    origin: str

    @property
    def meta_keyword(self) -> str | None:
        """The file meta element that must follow this tag (SOP Class/Instance UID), if any."""
        return _SOP_TO_META.get(self.tag)


def make_rule(keyword: str, template_text: str, origin: str) -> TagRule:
    """One rule, checked: TagRuleError naming `origin` when the keyword or the template cannot be used."""
    keyword = keyword.strip()
    if not _KEYWORD.fullmatch(keyword) or (tag := tag_for_keyword(keyword)) is None:
        raise TagRuleError(f"{origin}: {keyword!r} is not a DICOM keyword known to pydicom (e.g. PatientID)")
    vr = dictionary_VR(tag)
    if tag >> 16 == 0x0002 or tag >= _FIRST_PIXEL_TAG or tag == _SPECIFIC_CHARACTER_SET:
        raise TagRuleError(f"{origin}: {keyword} cannot be set (file meta, pixel data or character set)")
    if vr not in _TEXT_VRS | _INT_VRS | _FLOAT_VRS:
        raise TagRuleError(f"{origin}: {keyword} has VR {vr}, which cannot be set from text")
    try:
        template = parse_template(template_text.strip())
    except TemplateError as e:
        raise TagRuleError(f"{origin}: {keyword}: {e}") from None
    return TagRule(keyword, tag, vr, template, origin)


def parse_set_tag(text: str) -> TagRule:
    """A `--set-tag KEYWORD=VALUE` word."""
    keyword, sep, value = text.partition("=")
    if not sep:
        raise TagRuleError(f"--set-tag {text!r}: expected KEYWORD=VALUE")
    return make_rule(keyword, value, f"--set-tag {keyword.strip()}")


def parse_mapping(text: str, name: str) -> list[TagRule]:
    """The rules of a mapping file's text: `KEYWORD = template` per line; blank lines and `#` comments skipped."""
    rules: list[TagRule] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, sep, value = stripped.partition("=")
        if not sep:
            raise TagRuleError(f"{name} line {number}: expected 'KEYWORD = template', got {stripped!r}")
        rules.append(make_rule(keyword, value, f"{name} line {number}"))
    return rules


def read_mapping(path: Path) -> list[TagRule]:
    """The rules of the mapping file at `path` (UTF-8)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TagRuleError(f"mapping file {str(path)!r} cannot be read: {e}") from None
    return parse_mapping(text, str(path))


def merge_rules(*sources: list[TagRule]) -> list[TagRule]:
    """Rules of several sources, later sources winning per keyword; a keyword twice in one source is an error."""
    merged: dict[str, TagRule] = {}
    for rules in sources:
        seen: dict[str, str] = {}
        for rule in rules:
            if rule.keyword in seen:
                raise TagRuleError(f"{rule.origin}: {rule.keyword} is already set by {seen[rule.keyword]}")
            seen[rule.keyword] = rule.origin
            merged[rule.keyword] = rule
    return list(merged.values())


def typed_value(rule: TagRule, text: str) -> Any:
    """The value `text` means for the rule's VR (numbers for binary numeric VRs, `\\`-separated multiple values),
    checked by pydicom's validators; TagRuleError when it is not valid (a DA that is not a date, a US over 65535)."""
    pieces = [text] if rule.vr in _SINGLE_VALUED_VRS else text.split("\\")
    values: list[Any] = []
    for piece in pieces:
        try:
            value: Any = int(piece) if rule.vr in _INT_VRS else float(piece) if rule.vr in _FLOAT_VRS else piece
            validate_value(rule.vr, value, config.RAISE)
        except ValueError as e:
            reason = str(e).split(" Please see")[0]
            message = f"{rule.origin}: {text!r} is not a valid {rule.vr} for {rule.keyword}: {reason}"
            raise TagRuleError(message) from None
        values.append(value)
    return values[0] if len(values) == 1 else values


def check_encodable(rule: TagRule, text: str, charset: Any) -> None:
    """Refuse text the file's Specific Character Set (`charset`) cannot hold, rather than let pydicom write
    replacement characters."""
    if rule.vr not in _CHARSET_VRS or text.isascii():
        return
    # no Specific Character Set means the default repertoire, ASCII (pydicom would quietly write Latin-1)
    encodings = ["ascii"] if charset in (None, "", "ISO_IR 6") else convert_encodings(charset)
    for encoding in encodings:
        try:
            text.encode(encoding)
            return
        except (UnicodeError, LookupError):
            continue
    raise TagRuleError(
        f"{rule.origin}: {text!r} cannot be written in the file's character set {charset or '(none: ASCII)'}"
    )


def value_text(element: DataElement | None) -> str | None:
    """A file's element as the text a template or a comparison sees (multiple values joined by `\\`); None when
    absent."""
    if element is None:
        return None
    value = element.value
    if value is None:
        return ""
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(item) for item in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value)
