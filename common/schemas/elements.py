"""Bodies of the elements API: the brief's element and document in, stored elements out.

The numbers inside `data` are checked by `common.brief.elements.summarise` (one function for the
whole system); :func:`summarise_elements` runs it over a batch and reports every bad element.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, RootModel, field_validator, model_validator

from common.app.pagination import Limit, Offset
from common.app.problems import FieldError, Unprocessable
from common.brief.elements import ElementDataError, ElementFigures, summarise
from common.schemas.text import PRINTABLE

ELEMENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
DEVICE_NAME_MAX = 255
OWNER_MAX = 128

ElementId = Annotated[
    str,
    Field(
        pattern=ELEMENT_ID_PATTERN,
        description="The element's own id: 1 to 64 letters, digits, `-` or `_`.",
        examples=["aabbcc1"],
    ),
]
DeviceName = Annotated[
    str,
    Field(min_length=1, max_length=DEVICE_NAME_MAX, description="Name of the device that recorded the data."),
    PRINTABLE,
]
OwnerId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=OWNER_MAX,
        description="Admins: only this user's elements, by user id (users: their own, whatever they name).",
    ),
    PRINTABLE,
]
_DEVICE_NAME_ALIASES = AliasChoices("deviceName", "device_name")


class ElementIn(BaseModel):
    """One element as the brief writes it: `{"id": ..., "data": [...], "deviceName": ...}`."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="ElementIn")

    id: ElementId
    data: list[str] = Field(
        min_length=1,
        description="Rows of whitespace-separated finite numbers >= 0 whose maximum is > 0.",
        examples=[["54 26 34", "12 0 99"]],
    )
    device_name: DeviceName = Field(validation_alias=_DEVICE_NAME_ALIASES)


class ElementDocument(RootModel[dict[str, ElementIn]]):
    """The brief's whole document: `{"1": {element}, "2": {element}, ...}`, stored all or nothing."""

    root: dict[str, ElementIn] = Field(min_length=1)


def is_single_element(body: object) -> bool:
    """True if a POST body is one element rather than a document of elements."""
    if not isinstance(body, dict):
        return False
    return "data" in body or "deviceName" in body or "device_name" in body or isinstance(body.get("id"), str)


def summarise_elements(elements: dict[str, ElementIn]) -> dict[str, ElementFigures]:
    """The figures of every element keyed like `elements`, or one 422 naming every bad element.

    A key of `""` means a single element (its fields are reported without a prefix). Two
    elements of one document with the same id are also an error of the document.
    """
    errors: list[FieldError] = []
    figures: dict[str, ElementFigures] = {}
    seen: dict[str, str] = {}
    for key, element in elements.items():
        prefix = f"{key}." if key else ""
        if element.id in seen:
            message = f"id {element.id!r} is also used by element {seen[element.id]!r}"
            errors.append(FieldError(field=f"{prefix}id", message=message))
        seen.setdefault(element.id, key)
        try:
            figures[key] = summarise(element.data)
        except ElementDataError as exc:
            errors.append(FieldError(field=f"{prefix}data", message=str(exc)))
    if errors:
        raise Unprocessable("The element data cannot be normalised.", errors=errors)
    return figures


def _not_nullable(schema: dict[str, Any]) -> None:
    """Document an optional field as absent-or-valid: null is refused (see `_not_null`)."""
    options = [option for option in schema.pop("anyOf", []) if option != {"type": "null"}]
    schema.pop("default", None)
    if len(options) == 1:
        schema.update({**options[0], **schema})


class ElementUpdate(BaseModel):
    """PUT/PATCH body: the brief's update changes only `device_name` and/or `id`."""

    model_config = ConfigDict(extra="forbid", title="ElementUpdate")

    id: ElementId | None = Field(
        default=None, description="New id (a rename); it must not be taken.", json_schema_extra=_not_nullable
    )
    device_name: DeviceName | None = Field(
        default=None, validation_alias=_DEVICE_NAME_ALIASES, json_schema_extra=_not_nullable
    )

    @field_validator("id", "device_name", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value

    @model_validator(mode="after")
    def _something_to_change(self) -> Self:
        if not self.model_fields_set:
            raise ValueError("give `id` and/or `device_name` to change")
        return self


class ElementOut(BaseModel):
    """A stored element."""

    model_config = ConfigDict(title="Element")

    id: str = Field(description="The element's own id (unique among its owner's elements).")
    owner: str = Field(description="User id of the element's owner.")
    device_name: str
    average_before: float = Field(description="Mean of the raw values.")
    average_after: float = Field(description="Mean of the values divided by their maximum.")
    data_size: int = Field(description="How many values the data holds.")
    raw_data: list[str] = Field(description="The data as it was posted.")
    created_at: datetime
    updated_at: datetime


class ElementDocumentOut(RootModel[dict[str, ElementOut]]):
    """The elements of a posted document, under the document's own keys."""


class ElementPage(BaseModel):
    """One page of the element list, ordered by creation."""

    items: list[ElementOut]
    total: int = Field(description="Rows matching the filter, over all pages.")
    limit: int
    offset: int
    next: str | None = Field(description="Path and query of the next page; null on the last page.")


class ElementListQuery(BaseModel):
    """Query parameters of `GET /api/elements/`."""

    model_config = ConfigDict(extra="forbid")

    limit: Limit = 100
    offset: Offset = 0
    device_name: DeviceName | None = Field(default=None, description="Only elements of this device.")
    owner: OwnerId | None = None


class ElementItemQuery(BaseModel):
    """Query parameters of one element's routes (`/api/elements/{element_id}/`)."""

    model_config = ConfigDict(extra="forbid")

    owner: OwnerId | None = Field(
        default=None,
        description="Admins: the owner's user id, needed when several owners use the id (users address only their "
        "own).",
    )
