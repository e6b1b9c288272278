"""A clock a test moves by hand, for code that takes one (token expiry, cache lifetimes): no sleeping."""

from __future__ import annotations

import time


class FakeClock:
    """Seconds since the epoch, starting now and moving only when the test says."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
