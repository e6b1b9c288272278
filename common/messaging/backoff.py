"""Waits between retries that never line up across processes: exponential backoff with full jitter.

After an outage every replica of every service retries at once; fixed or merely exponential waits keep
them in lockstep, so the recovering broker or database is hit by synchronized waves. "Full jitter"
(a wait drawn uniformly between 0 and the exponential bound, as in AWS's architecture blog) spreads
them out while keeping the same growth. The bound is capped, so a long outage is still noticed soon
after it ends.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

FIRST_DELAY = 0.2
"""Seconds: the bound of the first wait (doubled for each further attempt, up to the cap)."""


def full_jitter(attempt: int, cap: float, first: float = FIRST_DELAY) -> float:
    """The wait before retry number `attempt` (0-based): uniform in [0, min(cap, first * 2**attempt)]."""
    bound = min(cap, first * 2 ** min(attempt, 32))
    return random.uniform(0, bound)


def backoff_delays(cap: float, first: float = FIRST_DELAY) -> Iterator[float]:
    """An endless series of full-jitter waits: attempt 0, 1, 2, ..."""
    attempt = 0
    while True:
        yield full_jitter(attempt, cap, first)
        attempt += 1


def spread(interval: float) -> float:
    """`interval` give or take half of it: a fixed period made different for every caller and every call."""
    return random.uniform(0.5 * interval, 1.5 * interval)
