"""What this processor uses now: CPU and resident memory of its own process and of its worker processes.

One reading is a `Usage`; a `UsageSampler` makes readings. `ProcessTreeUsage` reads them with psutil from
the processor and every descendant (the pebble workers, and any process a decoder starts), so a worker
replaced after a timeout is counted from its first reading. CPU is psutil's percent since the previous
reading, summed over the processes (100 = one core busy); a process first seen in this reading counts 0 for
CPU until the next one. Tests give the processor a sampler of their own and feed it the readings they want:
nothing here depends on the clock for what the admission decides.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Protocol

import psutil  # type: ignore[import-untyped]  # no stubs installed (types-psutil is not a dependency)


@dataclass(frozen=True)
class Usage:
    """One reading: CPU percent (100 = one core) and resident bytes of the processor and its workers."""

    cpu_percent: float
    memory_bytes: int


class UsageSampler(Protocol):
    """Makes a reading of the processor's use now (blocking only briefly: it reads /proc)."""

    def sample(self) -> Usage: ...


class ProcessTreeUsage:
    """Readings of one process (the processor, by default this one) and all its descendants, with psutil."""

    def __init__(self, pid: int | None = None) -> None:
        self._root = psutil.Process(pid if pid is not None else os.getpid())
        self._known: dict[int, psutil.Process] = {}

    def _tree(self) -> list[psutil.Process]:
        found = [self._root]
        with contextlib.suppress(psutil.Error):
            found += self._root.children(recursive=True)
        tree: dict[int, psutil.Process] = {}
        for process in found:
            known = self._known.get(process.pid)
            # Keep the object seen before (psutil's CPU percent is a delta from its previous call), unless the pid
            # now belongs to another process.
            tree[process.pid] = known if known is not None and known == process else process
        self._known = tree
        return list(tree.values())

    def sample(self) -> Usage:
        """CPU percent since the previous reading and resident bytes, summed over the tree."""
        cpu = 0.0
        memory = 0
        for process in self._tree():
            try:
                with process.oneshot():
                    cpu += process.cpu_percent(interval=None)
                    memory += process.memory_info().rss
            except psutil.Error:  # ended between listing and reading
                continue
        return Usage(cpu_percent=cpu, memory_bytes=memory)


class FixedUsage:
    """A sampler that answers whatever reading was last set: the tests' and the benchmark's way to feed readings."""

    def __init__(self, usage: Usage | None = None) -> None:
        self.usage = usage if usage is not None else Usage(cpu_percent=0.0, memory_bytes=0)

    def sample(self) -> Usage:
        return self.usage
