"""Admission: a job starts only while its estimated memory fits in what is left of this processor's budget.

A processor has a memory budget (bytes its jobs may reserve) and CPU slots (jobs at once), from its
settings or from what its container or machine gives it (`processor_service.capacity`). Each job reserves
its estimate (`common.dicom.cost`) for as long as it runs; a job that does not fit waits, un-started, until
running jobs release enough (`reserve`). A waiting job never blocks a later one that fits now: the later one
starts (backfill), and the waiting one starts as soon as releases make room for it. That may delay a big
job behind a steady stream of small ones, never for longer than the small ones keep the budget full.

Protection from overload is the other half: `observe` takes a reading of the processor's real use
(`processor_service.usage`) and pauses admission while memory or CPU is over its limit, resuming only once
both are back under RESUME_FRACTION of their limits (hysteresis, so a reading near the limit does not flap
the consumers). Paused, nothing new starts; jobs already running go on to their end.

The read-only properties (`memory_budget`, `cpu_slots`, `reserved_bytes`, `jobs_in_flight`, `paused`,
`pause_reason`) are what the heartbeat and the metrics report. Subscribers (`subscribe`) are told after every
change, so the intake opens or closes its consumers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from common.app.logs import get_logger
from processor_service.usage import Usage, UsageSampler

log = get_logger(__name__)

RESUME_FRACTION = 0.9
"""A paused processor resumes once memory and CPU are both under this fraction of their limits."""
PATROL_SECONDS = 1.0
"""How often a waiting job checks that it is still wanted (its delivery's channel may have closed)."""

_MIB = 1024**2


@dataclass(frozen=True)
class Limits:
    """Where this processor stops taking jobs: resident bytes and CPU percent (100 = one core)."""

    memory_bytes: int
    cpu_percent: float


class Admission:
    """The budget, the reservations of running jobs and the overload pause of one processor."""

    def __init__(self, memory_budget: int, cpu_slots: int, limits: Limits) -> None:
        if memory_budget < 1 or cpu_slots < 1:
            raise ValueError("a processor needs a memory budget and at least one CPU slot")
        self._budget = memory_budget
        self._slots = cpu_slots
        self.limits = limits
        self._reserved = 0
        self._in_flight = 0
        self._pause_reason: str | None = None
        self.peak_reserved_bytes = 0
        """The most bytes ever reserved at once (tests and the benchmark check it against the budget)."""
        self.last_usage: Usage | None = None
        self._changed = asyncio.Event()
        self._subscribers: list[Callable[[], None]] = []

    @property
    def memory_budget(self) -> int:
        """Bytes the jobs of this processor may reserve at once."""
        return self._budget

    @property
    def cpu_slots(self) -> int:
        """Jobs this processor runs at once at most (its worker processes)."""
        return self._slots

    @property
    def reserved_bytes(self) -> int:
        """Bytes reserved now by running jobs (the sum of their estimates)."""
        return self._reserved

    @property
    def jobs_in_flight(self) -> int:
        """Jobs running now (each holds a reservation)."""
        return self._in_flight

    @property
    def paused(self) -> bool:
        """True while real use is over a limit: no job starts."""
        return self._pause_reason is not None

    @property
    def pause_reason(self) -> str | None:
        """Why admission is paused (which use is over which limit), None while it is not."""
        return self._pause_reason

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call `callback` (synchronously, so it must only schedule work) after every change of state."""
        self._subscribers.append(callback)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        for callback in self._subscribers:
            callback()

    def never_fits(self, cost: int) -> bool:
        """True for a job larger than the whole budget: it could not start here even on an idle processor."""
        return cost > self._budget

    def has_slot(self) -> bool:
        """True while another job could start by count (a free CPU slot, not paused)."""
        return not self.paused and self._in_flight < self._slots

    def fits(self, cost: int) -> bool:
        """True when a job of `cost` bytes could start now."""
        return self.has_slot() and self._reserved + cost <= self._budget

    def try_reserve(self, cost: int) -> bool:
        """Reserve `cost` bytes and a slot if the job fits now; False (nothing reserved) if not."""
        if not self.fits(cost):
            return False
        self._reserved += cost
        self._in_flight += 1
        self.peak_reserved_bytes = max(self.peak_reserved_bytes, self._reserved)
        self._notify()
        return True

    async def reserve(self, cost: int, *, still_wanted: Callable[[], bool] = lambda: True) -> bool:
        """Wait until a job of `cost` bytes fits, then reserve it; False (nothing reserved) once it is no longer
        wanted or if it can never fit."""
        while not self.try_reserve(cost):
            if self.never_fits(cost) or not still_wanted():
                return False
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), PATROL_SECONDS)
        return True

    def release(self, cost: int) -> None:
        """Give back what a finished (or abandoned) job reserved."""
        self._reserved -= cost
        self._in_flight -= 1
        self._notify()

    def observe(self, usage: Usage) -> None:
        """Take a reading of real use: pause when memory or CPU is over its limit, resume when both are back under
        RESUME_FRACTION of it."""
        self.last_usage = usage
        over = self._over(usage)
        if over is not None and not self.paused:
            self._pause_reason = over
            log.warning("admission_paused", reason=over)
            self._notify()
        elif self.paused and self._under(usage):
            log.info("admission_resumed", memory_bytes=usage.memory_bytes, cpu_percent=round(usage.cpu_percent, 1))
            self._pause_reason = None
            self._notify()

    def _over(self, usage: Usage) -> str | None:
        if usage.memory_bytes > self.limits.memory_bytes:
            return (
                f"memory {usage.memory_bytes // _MIB} MiB is over its limit of {self.limits.memory_bytes // _MIB} MiB"
            )
        if usage.cpu_percent > self.limits.cpu_percent:
            return f"CPU {usage.cpu_percent:.0f}% is over its limit of {self.limits.cpu_percent:.0f}%"
        return None

    def _under(self, usage: Usage) -> bool:
        return (
            usage.memory_bytes <= self.limits.memory_bytes * RESUME_FRACTION
            and usage.cpu_percent <= self.limits.cpu_percent * RESUME_FRACTION
        )


async def watch_usage(admission: Admission, sampler: UsageSampler, interval: float) -> None:
    """Feed `admission` a reading every `interval` seconds until cancelled (the reading runs in a thread)."""
    while True:
        try:
            admission.observe(await asyncio.to_thread(sampler.sample))
        except Exception:  # the task's boundary: a failed reading is logged and the next one tried
            log.exception("usage_reading_failed")
        await asyncio.sleep(interval)
