"""Which processes a test started: the worker processes a pool spawned, and whether a pid still runs."""

from __future__ import annotations

import psutil


def alive(pid: int) -> bool:
    """The process runs (a zombie waiting to be reaped does not count)."""
    return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def spawned_workers() -> set[int]:
    """Pids of the live spawned children of this (test) process: pool workers, and a Manager if a test made one;
    multiprocessing's resource tracker is not spawned that way."""
    return {
        child.pid
        for child in psutil.Process().children()
        if "multiprocessing.spawn" in " ".join(child.cmdline()) and alive(child.pid)
    }
