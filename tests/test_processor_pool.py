"""processor_service.pool: worker processes that time out or die are killed and replaced, alone."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from processor_service.pool import JobTimedOut, WorkerLost, WorkerPool


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    pool = WorkerPool(2)
    await pool.start()
    yield pool
    await pool.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _sleep_then_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def _raise() -> None:
    raise ValueError("bad input")


async def test_calls_run_in_other_processes(pool: WorkerPool) -> None:
    pids = await asyncio.gather(*(pool.run(_sleep_then_pid, 0.2, timeout=10) for _ in range(2)))
    assert os.getpid() not in pids
    assert len(set(pids)) == 2  # both processes work at once


async def test_timed_out_worker_is_killed_and_replaced(pool: WorkerPool) -> None:
    before = set(await asyncio.gather(*(pool.run(_sleep_then_pid, 0.1, timeout=10) for _ in range(2))))
    with pytest.raises(JobTimedOut):
        await pool.run(_sleep_then_pid, 30, timeout=0.3)
    after = set(await asyncio.gather(*(pool.run(_sleep_then_pid, 0.1, timeout=10) for _ in range(2))))
    killed = before - after
    assert len(killed) == 1
    assert not any(_alive(pid) for pid in killed)


async def test_a_timeout_does_not_disturb_the_job_beside_it(pool: WorkerPool) -> None:
    innocent = asyncio.ensure_future(pool.run(_sleep_then_pid, 0.6, timeout=10))
    with pytest.raises(JobTimedOut):
        await pool.run(_sleep_then_pid, 30, timeout=0.2)
    assert isinstance(await innocent, int)


async def test_dead_worker_is_reported_and_replaced(pool: WorkerPool) -> None:
    with pytest.raises(WorkerLost):
        await pool.run(os._exit, 3, timeout=10)
    # The replacement is warming up meanwhile; the second call waits for it rather than failing.
    pids = await asyncio.gather(*(pool.run(_sleep_then_pid, 1.0, timeout=10) for _ in range(2)))
    assert len(set(pids)) == 2


async def test_an_exception_in_the_call_keeps_the_worker(pool: WorkerPool) -> None:
    first = await pool.run(os.getpid, timeout=10)
    with pytest.raises(ValueError, match="bad input"):
        await pool.run(_raise, timeout=10)
    pids = set(await asyncio.gather(*(pool.run(_sleep_then_pid, 0.1, timeout=10) for _ in range(2))))
    assert first in pids


async def test_closed_pool_kills_its_workers_and_refuses_calls() -> None:
    pool = WorkerPool(1)
    await pool.start()
    pid = await pool.run(os.getpid, timeout=10)
    await pool.close()
    assert not _alive(pid)
    with pytest.raises(RuntimeError, match="closed"):
        await pool.run(os.getpid, timeout=10)
