"""A worker process's tie to the processor that started it: when the processor dies, its workers die too.

The processor stops its workers itself when it is stopped, but a processor killed with SIGKILL (the
kernel's OOM killer, `kill -9`, a node agent) cannot: its workers would live on as orphans, each
holding the memory of its imports, with nobody left to give them work. So each worker asks the
kernel to send it SIGKILL when its parent dies (Linux's PR_SET_PDEATHSIG, no cost while it waits),
then checks that its parent is still the one that started it: a parent that died before the request
was made would otherwise never be reported. SIGKILL rather than SIGTERM because a worker may be deep
in a decoder's C code, where a Python signal handler would not run, and there is nothing to hand
back to a dead parent. Where the kernel offers no such request, a daemon thread polls the parent's
pid instead (a reparented process sees another parent pid).

The signal is tied to the thread that created the worker, not to the whole parent process: the
workers of a pebble pool are created by the event loop's thread or by the pool's own manager thread,
which both live as long as the pool does.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
"""prctl option (linux/prctl.h): the signal this process gets when its parent dies."""

EXIT_ORPHANED = 70
"""Exit status of a worker that found itself orphaned (nobody reads it: its parent is gone)."""

WATCH_SECONDS = 1.0
"""How often the fallback watchdog compares the parent pid with the one that started the worker."""


def set_parent_death_signal(sig: signal.Signals = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies; False where that is not offered."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        result = libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # no libc symbol table to speak of (static builds, exotic loaders)
        return False
    return bool(result == 0)


def end_if_orphaned(parent_pid: int) -> None:
    """Exit at once unless `parent_pid` is still this process's parent."""
    if os.getppid() != parent_pid:
        os._exit(EXIT_ORPHANED)


def watch_parent(parent_pid: int, interval: float = WATCH_SECONDS) -> threading.Thread:
    """A daemon thread that ends this process once `parent_pid` is no longer its parent (polling fallback)."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            threading.Event().wait(interval)
        os._exit(EXIT_ORPHANED)

    thread = threading.Thread(target=watch, name="parent-watchdog", daemon=True)
    thread.start()
    return thread


def tie_to_parent(parent_pid: int) -> None:
    """Make this process end when `parent_pid`, the process that started it, dies (or has already died)."""
    if not set_parent_death_signal():
        watch_parent(parent_pid)
    end_if_orphaned(parent_pid)  # the parent may have died before the kernel was asked to tell us
