"""Which failures are the infrastructure's and which the message's, and holding work through an outage.

A message's delivery attempts are for the message: a quorum queue parks it after `x-delivery-limit`
returns. An outage of the database, the blob store or the broker says nothing about the message, so
the consumers never return a message for one: they keep the delivery (unacknowledged, so with the
prefetch full the broker sends no more), retry the same work with backoff until it succeeds, then
ack and go on (:func:`retry_through_outage`). Only the failures left over, those of the message
itself, are rejected and counted toward parking.

:func:`is_infrastructure_error` is the one place that tells them apart:

- the database is unreachable or dropped the session: asyncpg's connection errors (refused,
  terminated by an administrator, shutting down, too many connections, a closed connection or pool)
  and Tortoise's `DBConnectionError`; also its transient refusals (serialization failure, deadlock),
  which a retry resolves and which no message causes;
- the blob store or any socket is unreachable: an `OSError` that is not a missing file (a missing blob is
  `BlobNotFound`, the message's fault), including a timeout; an object store whose bucket is missing,
  that refuses our credentials or cannot be reached (`BlobStoreUnavailable`);
- the broker: connection, channel and confirm errors while publishing.

Tortoise wraps some asyncpg errors in its own (`OperationalError`, `TransactionManagementError`), so
the chain of causes of Tortoise's exceptions is followed; other wrappers (a job that timed out in a
worker, raised from a `TimeoutError`) are the message's: their causes are not looked into.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import aio_pika.exceptions
import asyncpg
import tortoise.exceptions

from common.app.logs import get_logger
from common.messaging.backoff import backoff_delays
from common.storage.blob_errors import BlobStoreUnavailable

log = get_logger(__name__)

T = TypeVar("T")

# What a broker call raises when the broker is unreachable, did not confirm in time, or the channel is
# closed (a RuntimeError in aiormq, raised while a robust channel is being restored after a restart).
BROKER_ERRORS = (
    aio_pika.exceptions.AMQPError,
    aio_pika.exceptions.ChannelInvalidStateError,
    ConnectionError,
    TimeoutError,
)
DATABASE_ERRORS = (
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: admin shutdown, crash shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.InterfaceError,  # the connection or the pool is closed
    asyncpg.exceptions.InternalClientError,  # a connection left mid-operation by a server shutting down
    tortoise.exceptions.DBConnectionError,
)
MAX_RETRY_DELAY = 30.0
"""Seconds: the longest wait between two tries of held work (the default of RETRY_MAX_DELAY)."""


class DeliveryLost(Exception):
    """The delivery held through an outage is gone (its channel closed): the broker will deliver it again."""


def is_infrastructure_error(error: BaseException) -> bool:
    """True when `error` is an outage of the database, the blob store or the broker, not the message's fault."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DATABASE_ERRORS) and not isinstance(current, ValueError):
            return True  # asyncpg's DataError (a value that cannot be encoded) is an InterfaceError and a ValueError
        if isinstance(current, aio_pika.exceptions.AMQPError | aio_pika.exceptions.ChannelInvalidStateError):
            return True
        if isinstance(current, OSError) and not isinstance(current, FileNotFoundError):
            return True
        if isinstance(current, BlobStoreUnavailable):
            return True
        if not isinstance(current, tortoise.exceptions.BaseORMException):
            return False
        current = current.__cause__ or current.__context__
    return False


async def retry_through_outage(
    work: Callable[[], Awaitable[T]],
    *,
    what: str,
    max_delay: float = MAX_RETRY_DELAY,
    still_wanted: Callable[[], bool] | None = None,
) -> T:
    """`await work()` until it succeeds, waiting (exponential backoff, full jitter) after infrastructure errors.

    Any other error is raised at once: it is the message's. When `still_wanted` says the result is no
    longer wanted (the delivery it was for is gone), raises DeliveryLost instead of trying again.
    Each retry is logged as `outage_retry`, the recovery as `outage_recovered`.
    """
    delays = backoff_delays(max_delay)
    attempts = 0
    while True:
        try:
            outcome = await work()
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:
            if not is_infrastructure_error(exc):
                raise
            if still_wanted is not None and not still_wanted():
                raise DeliveryLost(f"{what}: the delivery was lost during the outage") from exc
            attempts += 1
            delay = next(delays)
            log.warning("outage_retry", work=what, attempt=attempts, delay=round(delay, 3), error=repr(exc)[:300])
            await asyncio.sleep(delay)
        else:
            if attempts:
                log.info("outage_recovered", work=what, attempts=attempts)
            return outcome
