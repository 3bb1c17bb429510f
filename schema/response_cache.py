"""Whole answers to a user's trading reads, kept per process and checked against versions.

Dashboards and scripts poll the same documents (`orders(first: 20)`, `portfolio`) again and
again, and between two changes of the user's data every poll gets the same answer. An answer is
kept under (user, login session, Accept, body) together with the versions of the user's data
and of the market read before it was computed; the broker counts those versions across every
process (see app/broker.py), and every change of a user's orders, trades, positions, bots,
strategies or account, every revocation of one of the user's sessions, and every market tick,
moves one. A request whose versions have not moved is answered from the entry without
parsing, validating or executing anything.

Kept: queries whose root fields are all in `CACHEABLE` (reads scoped to the signed-in user),
answered without errors. Never for longer than `seconds`: a bound on staleness should a version
ever fail to move (a publish lost with Redis down). While the versions cannot be read, every
request is executed; after a failed read the cache asks Redis again only `RETRY_SECONDS` later,
so that while Redis is frozen one request in that time waits out the client's timeout
(`TG_REDIS_TIMEOUT`) rather than every one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

import structlog
from graphql import DocumentNode, FieldNode, OperationDefinitionNode

from app.broker import Broker, BrokerUnavailable
from app.observability import REDIS_RECONNECTS, REDIS_UNAVAILABLE

log = structlog.get_logger(__name__)

CACHEABLE = frozenset(
    {
        "orders",
        "order",
        "trades",
        "positions",
        "portfolio",
        "bots",
        "bot",
        "strategies",
        "strategy",
        "__typename",
    }
)
MAX_BODY = 256 * 1024
RETRY_SECONDS = 2.0

Key = tuple[int, str, str, bytes]  # user, login session, Accept, body


@dataclass(frozen=True, slots=True)
class Entry:
    versions: tuple[int, ...]
    body: bytes
    media_type: str
    operation: str  # the metrics label of the operation
    stored_at: float


def root_fields(document: DocumentNode, operation_name: str | None) -> set[str] | None:
    """The root field names of the operation executed, or None if its root selects anything
    but plain fields (fragments are not worth following for this)."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    chosen = [
        o
        for o in operations
        if operation_name is None or (o.name is not None and o.name.value == operation_name)
    ]
    if len(chosen) != 1:
        return None
    names: set[str] = set()
    for selection in chosen[0].selection_set.selections:
        if not isinstance(selection, FieldNode):
            return None
        names.add(selection.name.value)
    return names


def cacheable(document: DocumentNode, operation_name: str | None) -> bool:
    fields = root_fields(document, operation_name)
    return bool(fields) and fields is not None and fields <= CACHEABLE


class ResponseCache:
    def __init__(self, broker: Broker, *, entries: int, seconds: float) -> None:
        self._broker = broker
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._max = entries
        self._seconds = seconds
        # While the versions could not be read: when to ask Redis again (monotonic seconds).
        self._retry_at: float | None = None

    @property
    def enabled(self) -> bool:
        return self._max > 0

    async def versions(self, user_id: int) -> tuple[int, ...] | None:
        """The versions an answer for `user_id` depends on; None when they cannot be read
        (Redis unreachable), and then nothing may be answered from, or kept in, the cache."""
        if self._retry_at is not None and time.monotonic() < self._retry_at:
            return None
        try:
            versions = await self._broker.versions(f"user:{user_id}", "market")
        except BrokerUnavailable as exc:
            if self._retry_at is None:
                log.warning("response_cache.redis_unavailable", error=str(exc))
                REDIS_UNAVAILABLE.labels("response_cache").inc()
            self._retry_at = time.monotonic() + RETRY_SECONDS
            return None
        if self._retry_at is not None:
            self._retry_at = None
            log.info("response_cache.redis_back")
            REDIS_RECONNECTS.labels("response_cache").inc()
        return versions

    def get(self, key: Key, versions: tuple[int, ...]) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.versions != versions or time.monotonic() - entry.stored_at > self._seconds:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def put(
        self, key: Key, versions: tuple[int, ...], *, body: bytes, media_type: str, operation: str
    ) -> None:
        if len(body) > MAX_BODY:
            return
        self._entries[key] = Entry(versions, body, media_type, operation, time.monotonic())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
