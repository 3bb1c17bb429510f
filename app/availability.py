"""What a client is told when the infrastructure cannot serve it: SERVICE_UNAVAILABLE with
`retryAfter`, never a stall or a bare 500.

A request meets this when no pooled database connection came free within
`TG_DATABASE_POOL_TIMEOUT`, when the database or Redis is unreachable (app/faults.py tells
these from the work's own failures), or when its process, serving `TG_MAX_IN_FLIGHT` requests
at once, could not start it within `TG_REQUEST_QUEUE_TIMEOUT` (app/middleware.py sheds it
before any work). In each case the same request is likely to succeed a moment later, so the
answer says when to try again.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import structlog

from app import faults, observability
from app.errors import ServiceUnavailable

log = structlog.get_logger(__name__)

# Seconds a client should wait before trying again. A busy process (shed, or its pool full)
# frees up within a second; an unreachable database takes a restart's few seconds at least.
BUSY_RETRY_AFTER = 1
OUTAGE_RETRY_AFTER = 2

_ANSWERS = {
    faults.DATABASE_POOL: (
        "the server is busy: no database connection came free",
        BUSY_RETRY_AFTER,
    ),
    faults.DATABASE: ("the database could not serve this request", OUTAGE_RETRY_AFTER),
    faults.REDIS: ("a service this request needs (Redis) is unavailable", OUTAGE_RETRY_AFTER),
    faults.NETWORK: ("a service this request needs did not answer", OUTAGE_RETRY_AFTER),
}


def busy() -> ServiceUnavailable:
    """The refusal of a request shed for load."""
    return ServiceUnavailable(
        f"the server is busy; retry after {BUSY_RETRY_AFTER} s", retry_after=BUSY_RETRY_AFTER
    )


def unavailable(error: BaseException) -> ServiceUnavailable | None:
    """The answer to a request that failed for the infrastructure (counted and logged once
    here, without a traceback: an outage is not a bug), or None when `error` is the work's own
    failure."""
    if isinstance(error, ServiceUnavailable):
        return error
    kind = faults.infrastructure_kind(error)
    if kind is None or _sqlite_statement_failure(error):
        return None
    observability.SERVICE_UNAVAILABLE.labels(kind=kind).inc()
    if kind == faults.DATABASE_POOL:
        observability.DB_POOL_TIMEOUTS.inc()
    first_line = next(iter(str(error).splitlines()), "")
    log.warning(
        "request.service_unavailable", kind=kind, error=type(error).__name__, detail=first_line
    )
    message, retry_after = _ANSWERS[kind]
    return ServiceUnavailable(f"{message}; retry after {retry_after} s", retry_after=retry_after)


def body(refused: ServiceUnavailable) -> dict[str, Any]:
    """A GraphQL response refusing the whole request, for the answers made outside an operation
    (the load shedder, the sign-in's read): nothing ran, so there is no `data`."""
    extensions = {"code": refused.code, **refused.details()}
    return {"errors": [{"message": refused.message, "extensions": extensions}]}


def _sqlite_statement_failure(error: BaseException) -> bool:
    # SQLite reports a statement it cannot run (no such table, a syntax error) as an
    # OperationalError, as it does a write lock that stayed taken past its busy timeout; only
    # the lock is the database unable to serve for now, the rest is a bug to log and mask.
    original = getattr(error, "orig", None)
    return isinstance(original, sqlite3.Error) and "database is locked" not in str(original)
