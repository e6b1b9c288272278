"""Paging, one rule for every list: the bounds of `limit` and `offset`, and the `next` link.

Every list query model takes its `limit` and `offset` from here, so a value outside the bounds
(negative, not a number, or past what PostgreSQL's bigint can hold, which it would refuse with a
500) is a 422 naming the field and its bounds, the same on every list.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from yarl import URL

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_OFFSET = 2**31 - 1
"""Far past any list a client pages through, and within every integer type PostgreSQL binds."""

Limit = Annotated[
    int, Field(ge=1, le=MAX_LIMIT, description=f"Rows per page, from 1 to {MAX_LIMIT}.", examples=[DEFAULT_LIMIT])
]
Offset = Annotated[int, Field(ge=0, le=MAX_OFFSET, description=f"Rows to skip, from 0 to {MAX_OFFSET}.")]


def next_page(url: URL, *, limit: int, offset: int, shown: int, total: int) -> str | None:
    """Path and query of the page after the one shown (`url`'s other parameters kept); None on the last page."""
    next_offset = offset + shown
    if shown == 0 or next_offset >= total or next_offset > MAX_OFFSET:
        return None
    return str(url.update_query(limit=str(limit), offset=str(next_offset)))
