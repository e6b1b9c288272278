"""Process targets for the lifeline tests, in a module of their own: spawned children import only this (and
`processor_service.lifeline`), not the test module's heavier imports."""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any

from processor_service.lifeline import set_parent_death_signal, tie_to_parent, watch_parent

SPAWN = multiprocessing.get_context("spawn")


def tied_worker(tie: str, parent_pid: int, pids: Any) -> None:
    """A worker: tie itself to `parent_pid` the way `tie` says, report its pid, then wait for ever."""
    if tie == "kernel":
        assert set_parent_death_signal()
    elif tie == "watchdog":
        watch_parent(parent_pid, interval=0.05)
    else:
        tie_to_parent(parent_pid)
    pids.put(os.getpid())
    threading.Event().wait()


def parent_of_a_tied_worker(tie: str, pids: Any) -> None:
    """A parent: start one tied worker and wait for ever (until the test kills it)."""
    SPAWN.Process(target=tied_worker, args=(tie, os.getpid(), pids)).start()
    threading.Event().wait()
