"""The one classification of failures: outages of the infrastructure versus failures caused by the message."""

from __future__ import annotations

import errno

import aio_pika.exceptions
import asyncpg
import pytest
import tortoise.exceptions

from common.messaging.backoff import full_jitter
from common.messaging.faults import is_infrastructure_error
from common.storage.blobs import BlobNotFound, BlobUnreadable
from processor_service.pool import JobTimedOut


def wrapped(outer: BaseException, cause: BaseException) -> BaseException:
    outer.__cause__ = cause
    return outer


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
        asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.exceptions.TooManyConnectionsError("too many clients"),
        asyncpg.exceptions.SerializationError("could not serialize access"),
        asyncpg.exceptions.InterfaceError("pool is closing"),
        tortoise.exceptions.DBConnectionError("cannot connect"),
        wrapped(tortoise.exceptions.OperationalError("x"), asyncpg.exceptions.AdminShutdownError("x")),
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        OSError(errno.EIO, "input/output error"),
        NotADirectoryError(errno.ENOTDIR, "not a directory"),
        TimeoutError("no confirm"),
        aio_pika.exceptions.ChannelInvalidStateError("closed"),
        aio_pika.exceptions.AMQPConnectionError("gone"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_an_outage_is_the_infrastructures(error: BaseException) -> None:
    assert is_infrastructure_error(error)


@pytest.mark.parametrize(
    "error",
    [
        wrapped(tortoise.exceptions.IntegrityError("dup"), asyncpg.exceptions.UniqueViolationError("dup")),
        wrapped(tortoise.exceptions.OperationalError("x"), asyncpg.exceptions.StringDataRightTruncationError("x")),
        asyncpg.exceptions._base.DataError("invalid input for query argument $1"),
        FileNotFoundError(errno.ENOENT, "no such file"),
        BlobNotFound("a" * 64),
        BlobUnreadable("bad segment"),
        wrapped(JobTimedOut("no result after 30 s"), TimeoutError()),
        ValueError("bad value"),
        RuntimeError("worker crashed"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_failure_of_the_message_is_not(error: BaseException) -> None:
    assert not is_infrastructure_error(error)


@pytest.mark.parametrize("attempt", [0, 1, 5, 40, 10_000])
def test_backoff_waits_stay_within_the_exponential_bound_and_the_cap(attempt: int) -> None:
    waits = [full_jitter(attempt, cap=30.0, first=0.2) for _ in range(200)]
    assert all(0 <= wait <= min(30.0, 0.2 * 2 ** min(attempt, 32)) for wait in waits)
    assert len(set(waits)) > 1  # drawn, not fixed: replicas do not retry in lockstep
