"""Telling a fault of the infrastructure (a database or Redis that blinked) from a fault of the
work itself.

An infrastructure fault says nothing about the work: the same step is likely to succeed once
the connection is back, so callers retry it rather than fail what they were doing (a bot is not
put in ERROR because PostgreSQL restarted). Everything else (a domain error, a bug, a row the
database refused) is the work's own fault.

What counts, by kind:
- `database`: a connection lost or refused (SQLAlchemy's OperationalError and InterfaceError,
  any driver error SQLAlchemy saw invalidate its connection, asyncpg's errors of a connection
  left in a state it cannot use: "cannot switch to state 11; another operation is in
  progress", met after the server ended the connection), and the server states that pass
  (SQLSTATE class 08 connection exceptions, 53 insufficient resources, 57P01-57P03 shutdown and
  start-up, 57014 a statement cancelled, 40001 and 40P01 a serialisation failure or deadlock,
  where the transaction lost and a retry wins);
- `database_pool`: no pooled connection came free in time;
- `redis`: Redis refused, dropped or did not answer in time;
- `network`: any other operating-system error (a socket refused, reset or timed out).
"""

from __future__ import annotations

import sqlalchemy.exc
from asyncpg import exceptions as asyncpg_errors  # type: ignore[import-untyped]
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.errors import DomainError

DATABASE = "database"
DATABASE_POOL = "database_pool"
REDIS = "redis"
NETWORK = "network"

_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "57014", "40001", "40P01"})
_TRANSIENT_SQLSTATE_CLASSES = ("08", "53")
# How far down a chain of causes to look: drivers wrap errors two or three deep.
_DEPTH = 6


def _sqlstate_is_transient(error: BaseException) -> bool:
    # asyncpg's errors carry `sqlstate`, SQLAlchemy's adapter copies it; psycopg has `pgcode`.
    state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
    if not isinstance(state, str):
        return False
    return state in _TRANSIENT_SQLSTATES or state.startswith(_TRANSIENT_SQLSTATE_CLASSES)


def _causes(error: BaseException) -> list[BaseException]:
    """`error` and what it wraps: a DBAPIError's driver error, then the chain of causes."""
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and len(chain) < _DEPTH:
        chain.append(seen)
        if isinstance(seen, sqlalchemy.exc.DBAPIError) and seen.orig is not None:
            seen = seen.orig
        else:
            seen = seen.__cause__ or seen.__context__
    return chain


def _connection_error(error: sqlalchemy.exc.DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    if not isinstance(error, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        return False
    # asyncpg reports a value it could not send (a number past NUMERIC's range) as an
    # InterfaceError too: a ValueError of the work, not of the connection.
    return not any(isinstance(cause, ValueError) for cause in _causes(error))


def _kind(error: BaseException) -> str | None:
    if isinstance(error, sqlalchemy.exc.TimeoutError):
        return DATABASE_POOL
    if isinstance(error, sqlalchemy.exc.DBAPIError) and _connection_error(error):
        return DATABASE
    if _sqlstate_is_transient(error) or isinstance(error, asyncpg_errors.InternalClientError):
        return DATABASE
    if isinstance(error, RedisConnectionError | RedisTimeoutError):
        return REDIS
    if isinstance(error, OSError):  # TimeoutError and ConnectionError among them
        return NETWORK
    return None


def infrastructure_kind(error: BaseException) -> str | None:
    """The kind of infrastructure fault behind `error`, or None when it is the work's own.

    The causes are followed too: a driver's error arrives wrapped by SQLAlchemy, and a
    rollback that failed on a dead connection carries the error that made it roll back.
    """
    if isinstance(error, DomainError):
        return None  # a refusal of the work, whatever led to it
    for cause in _causes(error):
        kind = _kind(cause)
        if kind is not None:
            return kind
    return None
