"""Stored elements: create (all or nothing), read, list, rename/update, delete.

Uniqueness of the element's id is the database's job (a unique constraint), so duplicates that
arrive concurrently are caught as they are written; the checks before the writes only make
the usual case's message precise.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from common.elements import ElementFigures
from common.problems import Conflict, NotFound
from common.schemas.elements import ElementIn, ElementOut, ElementUpdate
from results_service.models.elements import Element

_OUT_FIELDS = (
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
        super().__init__(f"No element has the id {element_id!r}.")


class ElementIdTaken(Conflict):
    """An element with this id exists already."""

    def __init__(self, element_ids: Iterable[str]) -> None:
        ids = ", ".join(repr(i) for i in sorted(element_ids))
        super().__init__(f"An element with the id {ids} exists already." if ids else "An element id exists already.")


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


async def create_elements(elements: dict[str, ElementIn], figures: dict[str, ElementFigures]) -> dict[str, ElementOut]:
    """Store every element in one transaction (all or nothing); the stored views, keyed like `elements`."""
    now = datetime.now(UTC)
    rows = {
        key: Element(
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
        taken = await Element.filter(element_id__in=ids).using_db(conn).values_list("element_id", flat=True)
        if taken:
            raise ElementIdTaken(str(i) for i in taken)
        try:
            await Element.bulk_create(list(rows.values()), using_db=conn)
        except IntegrityError as exc:  # a concurrent request stored one of these ids first
            raise ElementIdTaken(ids if len(ids) == 1 else ()) from exc
    return {key: element_out(row) for key, row in rows.items()}


async def get_element(element_id: str) -> ElementOut:
    """One element by its id."""
    rows = await Element.filter(element_id=element_id).values(*_OUT_FIELDS)
    if not rows:
        raise ElementNotFound(element_id)
    return _out(rows[0])


async def list_elements(*, limit: int, offset: int, device_name: str | None) -> Page:
    """A page of elements in creation order, optionally of one device only."""
    query = Element.all() if device_name is None else Element.filter(device_name=device_name)
    total = await query.count()
    rows = await query.order_by("row_id").offset(offset).limit(limit).values(*_OUT_FIELDS)
    return Page(items=[_out(row) for row in rows], total=total)


async def update_element(element_id: str, change: ElementUpdate) -> ElementOut:
    """Rename and/or change the device of one element, in place (one row before and after)."""
    async with in_transaction() as conn:
        element = await Element.filter(element_id=element_id).using_db(conn).select_for_update().first()
        if element is None:
            raise ElementNotFound(element_id)
        fields = ["updated_at"]
        if change.id is not None and change.id != element_id:
            if await Element.filter(element_id=change.id).using_db(conn).exists():
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


async def delete_element(element_id: str) -> None:
    """Delete one element."""
    deleted = await Element.filter(element_id=element_id).delete()
    if not deleted:
        raise ElementNotFound(element_id)
