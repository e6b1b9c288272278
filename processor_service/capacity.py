"""What this processor may use: its memory budget, CPU slots and overload limits, from its settings or its box.

A setting left unset takes its default from what the container or machine gives the process:

- memory: cgroup v2 `memory.max` when it is a number, else the physical memory;
- CPUs: cgroup v2 `cpu.max` (quota / period) when it has a quota, else the CPUs this process may run on
  (`os.sched_getaffinity`, else `os.cpu_count()`).

From those, the defaults are a budget of MEMORY_BUDGET_FRACTION of the memory (the rest is the processes'
own baseline and the estimates' error), one CPU slot per whole CPU (at least one), a memory limit of
MEMORY_LIMIT_FRACTION of the memory (paused there, before the kernel's OOM killer acts) and a CPU limit of
all the CPUs (100 per CPU: slots already keep one worker process per CPU; set it lower to leave CPU to
neighbours on a shared machine).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]  # no stubs installed (types-psutil is not a dependency)

from processor_service.admission import Limits
from processor_service.settings import ProcessorSettings

CGROUP_ROOT = Path("/sys/fs/cgroup")
MEMORY_BUDGET_FRACTION = 0.6
MEMORY_LIMIT_FRACTION = 0.85


@dataclass(frozen=True)
class Capacity:
    """What the container (or the machine) gives this process."""

    memory_bytes: int
    cpus: float


@dataclass(frozen=True)
class Resources:
    """The budget, slots and limits this processor runs with (settings, or defaults from its Capacity)."""

    memory_budget: int
    cpu_slots: int
    limits: Limits


def _cgroup_value(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_memory(root: Path) -> int | None:
    value = _cgroup_value(root / "memory.max")
    return int(value) if value is not None and value.isdigit() else None


def _cgroup_cpus(root: Path) -> float | None:
    value = _cgroup_value(root / "cpu.max")
    if value is None:
        return None
    quota, _, period = value.partition(" ")
    if not quota.isdigit() or not period.isdigit() or int(period) == 0:
        return None  # "max": no quota
    return int(quota) / int(period)


def _machine_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def read_capacity(cgroup_root: Path = CGROUP_ROOT) -> Capacity:
    """The memory and CPUs this process is given: its cgroup's limits where set, else the machine's."""
    memory = _cgroup_memory(cgroup_root)
    cpus = _cgroup_cpus(cgroup_root)
    return Capacity(
        memory_bytes=memory if memory is not None else int(psutil.virtual_memory().total),
        cpus=cpus if cpus is not None else float(_machine_cpus()),
    )


def resolve(settings: ProcessorSettings, capacity: Capacity | None = None) -> Resources:
    """The settings' budget, slots and limits, each unset one defaulted from `capacity` (read when not given)."""
    box = capacity if capacity is not None else read_capacity()
    slots = settings.processor_cpu_slots or settings.processor_concurrency or max(1, math.floor(box.cpus))
    budget = settings.processor_memory_budget_bytes or int(box.memory_bytes * MEMORY_BUDGET_FRACTION)
    memory_limit = settings.processor_memory_limit_bytes or int(box.memory_bytes * MEMORY_LIMIT_FRACTION)
    cpu_limit = settings.processor_cpu_limit_percent or 100.0 * box.cpus
    return Resources(memory_budget=budget, cpu_slots=slots, limits=Limits(memory_limit, cpu_limit))
