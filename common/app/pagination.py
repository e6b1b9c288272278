"""The `next` link every paginated list answers with, built one way for all of them."""

from __future__ import annotations

from yarl import URL


def next_page(url: URL, *, limit: int, offset: int, shown: int, total: int) -> str | None:
    """Path and query of the page after the one shown (`url`'s other parameters kept); None on the last page."""
    next_offset = offset + shown
    if shown == 0 or next_offset >= total:
        return None
    return str(url.update_query(limit=str(limit), offset=str(next_offset)))
