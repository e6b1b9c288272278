"""Points in time a client sends (filters such as the audit trail's `since` and `until`).

A time without a zone is ambiguous (and the ORM only warns about it), and an instant near the ends
of Python's calendar cannot be converted to UTC (an OverflowError, a 500): both are refused here as
a 422 naming the field, and what passes is in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime


def _in_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of range once converted to UTC") from exc


Moment = Annotated[AwareDatetime, AfterValidator(_in_utc)]
"""An ISO 8601 date and time with its UTC offset (`2026-01-31T12:00:00Z`), as a UTC datetime."""
