"""The design floor: the least server CPU per file that any gateway + ingest_service of this architecture spends.

The issue fixes what every accepted file costs, whoever writes the code: two HTTP hops (gateway →
ingest_service), pydicom validation, SHA-256, and (new bytes) AES-GCM sealing and a durable atomic write,
a registration with results_service in PostgreSQL, and a confirmed persistent publish to a quorum queue.
The floor sums, for each round of one benchmark run:

- the two hops with no work behind them (`bench/hop_floor.py`, measured in the same run);
- ingest's file work (`file_work_ms`): ingest's own `store_whole` (validation and blob store) on the
  same files, in one thread here, with no HTTP, no queue and no event loop around them;
- what results_service, RabbitMQ and PostgreSQL spent per file in our own round of the same run.

So it is our system with the gateway's and ingest's own overhead set to zero. With the CPUs the limit
(`bench/README.md`), a rate can exceed Orthanc's by at most the ratio of the two CPU costs per file.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from common.storage.blobs import BlobStore
from common.storage.crypto import Keyring
from ingest_service.staging import store_whole

SERVICE_PARTS = ("results_service", "rabbitmq", "postgres")


def file_work_ms(paths: Sequence[Path], root: Path, keyring: Keyring) -> dict[int, float]:
    """CPU ms per file (this thread, user + system) of ingest's own `store_whole` on each file: round 1 into an
    empty blob store (validate, hash, seal, O_DIRECT write, fdatasync, rename, directory fsync), round 2 the same
    files again (validate, hash, found stored). Reading the files from disk is not counted: the hops' floor
    already receives them."""
    store = BlobStore(root, keyring)
    figures: dict[int, float] = {}
    for round_no in (1, 2):
        spent = 0.0
        for path in paths:
            data = path.read_bytes()
            started = time.thread_time()
            store_whole(store, [data])
            spent += time.thread_time() - started
        figures[round_no] = spent / len(paths) * 1000
    return figures


def design_floor_ms(hops: dict[str, float], file_work: float, ours: dict[str, float]) -> float:
    """Server CPU ms per file of the design floor for one round: the hops (proxy + sink), ingest's file work,
    and our round's results_service, RabbitMQ and PostgreSQL."""
    return hops["cpu:proxy"] + hops["cpu:sink"] + file_work + sum(ours[f"cpu:{part}"] for part in SERVICE_PARTS)
