"""Stored elements: create (all or nothing), read, list, rename/update, delete, always within a scope.

Elements are owned: an element id is unique per owner (a unique constraint on (owner,
element_id)), so a 409 never tells a user that someone else uses an id. Every query carries the
caller's scope (`Scope.filters`: a user's own rows; an admin's all rows or one owner's), so
another user's element is not found exactly like a missing one and lists are filtered in SQL.
Uniqueness is the database's job, so duplicates that arrive concurrently are caught as they are
written; the checks before the writes only make the usual case's message precise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from common.app.problems import Conflict, NotFound
from common.auth.identity import Caller
from common.brief.elements import ElementFigures
from common.schemas.elements import ElementIn, ElementOut, ElementUpdate
from common.schemas.text import shown
from results_service.models.elements import Element

_OUT_FIELDS = (
    "owner",
    "element_id",
    "device_name",
    "average_before",
    "average_after",
    "data_size",
    "raw_data",
    "created_at",
    "updated_at",
)


class ElementNotFound(NotFound):
    """No element has this id."""

    def __init__(self, element_id: str) -> None:
        super().__init__(f"No element has the id '{shown(element_id)}'.")


class ElementIdTaken(Conflict):
    """An element with this id exists already."""

    def __init__(self, element_ids: Iterable[str]) -> None:
        ids = ", ".join(repr(i) for i in sorted(element_ids))
        super().__init__(f"An element with the id {ids} exists already." if ids else "An element id exists already.")


class ElementIdAmbiguous(Conflict):
    """An admin named an element id that several owners use, without saying whose."""

    def __init__(self, element_id: str) -> None:
        super().__init__(
            f"Several owners have an element with the id '{element_id}'; name one with `?owner=<user id>`."
        )


@dataclass(frozen=True, slots=True)
class Scope:
    """The rows one request may address, as a Tortoise keyword filter."""

    filters: dict[str, Any]

    @classmethod
    def of(cls, caller: Caller, owner: str | None = None) -> Scope:
        """A user's own rows (naming another `owner` intersects to nothing); an admin's every row, or `owner`'s."""
        filters: dict[str, Any] = dict(caller.owner_filter())
        if owner is not None:
            filters["owner__in"] = [owner]
        return cls(filters)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of elements and the number of rows over all pages."""

    items: list[ElementOut]
    total: int


def _out(row: dict[str, object]) -> ElementOut:
    return ElementOut.model_validate({**row, "id": row["element_id"]})


def element_out(element: Element) -> ElementOut:
    """The API view of a stored element."""
    return _out({name: getattr(element, name) for name in _OUT_FIELDS})


async def create_elements(
    owner: str, elements: dict[str, ElementIn], figures: dict[str, ElementFigures]
) -> dict[str, ElementOut]:
    """Store every element for `owner` in one transaction (all or nothing); the stored views, keyed like `elements`."""
    now = datetime.now(UTC)
    rows = {
        key: Element(
            owner=owner,
            element_id=element.id,
            device_name=element.device_name,
            average_before=figures[key].average_before,
            average_after=figures[key].average_after,
            data_size=figures[key].data_size,
            raw_data=element.data,
            created_at=now,
            updated_at=now,
        )
        for key, element in elements.items()
    }
    ids = [element.id for element in elements.values()]
    async with in_transaction() as conn:
        taken = (
            await Element.filter(owner=owner, element_id__in=ids).using_db(conn).values_list("element_id", flat=True)
        )
        if taken:
            raise ElementIdTaken(str(i) for i in taken)
        try:
            await Element.bulk_create(list(rows.values()), using_db=conn)
        except IntegrityError as exc:  # a concurrent request stored one of these ids first
            raise ElementIdTaken(ids if len(ids) == 1 else ()) from exc
    return {key: element_out(row) for key, row in rows.items()}


def _one(rows: list[Any], element_id: str) -> Any:
    """The single row an id names in a scope: 404 when none, 409 when several owners use it."""
    if not rows:
        raise ElementNotFound(element_id)
    if len(rows) > 1:
        raise ElementIdAmbiguous(element_id)
    return rows[0]


async def get_element(scope: Scope, element_id: str) -> ElementOut:
    """One element by its id, within the scope."""
    rows = await Element.filter(element_id=element_id, **scope.filters).limit(2).values(*_OUT_FIELDS)
    return _out(_one(rows, element_id))


async def list_elements(scope: Scope, *, limit: int, offset: int, device_name: str | None) -> Page:
    """A page of the scope's elements in creation order, optionally of one device only."""
    filters: dict[str, Any] = dict(scope.filters)
    if device_name is not None:
        filters["device_name"] = device_name
    query = Element.filter(**filters)
    total = await query.count()
    rows = await query.order_by("row_id").offset(offset).limit(limit).values(*_OUT_FIELDS)
    return Page(items=[_out(row) for row in rows], total=total)


async def update_element(scope: Scope, element_id: str, change: ElementUpdate) -> ElementOut:
    """Rename and/or change the device of one element, in place (one row before and after)."""
    async with in_transaction() as conn:
        matching = Element.filter(element_id=element_id, **scope.filters).using_db(conn)
        element: Element = _one(await matching.select_for_update().limit(2), element_id)
        fields = ["updated_at"]
        if change.id is not None and change.id != element_id:
            if await Element.filter(owner=element.owner, element_id=change.id).using_db(conn).exists():
                raise ElementIdTaken([change.id])
            element.element_id = change.id
            fields.append("element_id")
        if change.device_name is not None:
            element.device_name = change.device_name
            fields.append("device_name")
        element.updated_at = datetime.now(UTC)
        try:
            await element.save(using_db=conn, update_fields=fields)
        except IntegrityError as exc:  # renamed concurrently to the same id
            raise ElementIdTaken([element.element_id]) from exc
    return element_out(element)


async def delete_element(scope: Scope, element_id: str) -> None:
    """Delete one element of the scope."""
    async with in_transaction() as conn:
        matching = Element.filter(element_id=element_id, **scope.filters).using_db(conn)
        row_id = _one(await matching.select_for_update().limit(2).values_list("row_id", flat=True), element_id)
        await Element.filter(row_id=row_id).using_db(conn).delete()
