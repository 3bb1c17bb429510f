"""Caps on the WebSockets one process holds open, per client address and per signed-in user.

A WebSocket costs the server memory, a reader task and, per subscription, a broker queue for as
long as it stays open; one token could otherwise hold thousands. An address takes a slot when
it connects (signed in or not), a user when its `connection_init` is accepted, and both are
given back when the connection closes. A connection over either cap is closed with
`TOO_MANY_CONNECTIONS`.

The counts are this process's: behind N replicas a user may hold up to N times the cap.
Counting in Redis would need each process to renew what it holds, or a crashed one would keep
its slots forever; a per-process cap already bounds what one process can be made to carry.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K")

# graphql-ws clients treat 4429 as final and do not retry: a client over its cap reconnects
# only once it has closed another connection, instead of knocking again at once.
TOO_MANY_CONNECTIONS = 4429


@dataclass
class Slot:
    """One open connection's place in the counts."""

    owner: OpenSockets = field(repr=False)
    address: str
    user_id: int | None = None

    def sign_in(self, user_id: int) -> bool:
        """Count the connection as `user_id`'s; False when that user is at the cap."""
        if self.user_id == user_id:
            return True
        self.sign_out()
        if self.owner.by_user[user_id] >= self.owner.per_user:
            return False
        self.owner.by_user[user_id] += 1
        self.user_id = user_id
        return True

    def sign_out(self) -> None:
        if self.user_id is not None:
            _release(self.owner.by_user, self.user_id)
            self.user_id = None

    def close(self) -> None:
        self.sign_out()
        _release(self.owner.by_address, self.address)


class OpenSockets:
    def __init__(self, *, per_user: int, per_address: int) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.by_address: Counter[str] = Counter()
        self.by_user: Counter[int] = Counter()

    def open(self, address: str) -> Slot | None:
        """A slot for a new connection from `address`, or None when the address is at the cap."""
        if self.by_address[address] >= self.per_address:
            return None
        self.by_address[address] += 1
        return Slot(self, address)


def _release(counts: Counter[K], key: K) -> None:
    counts[key] -= 1
    # Entries at zero go: the tables hold only addresses and users with a connection open.
    if counts[key] <= 0:
        del counts[key]
