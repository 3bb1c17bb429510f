"""Keyset (cursor) pagination over a unique sort key (an integer id or a time)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.errors import InvalidInput

T = TypeVar("T")
K = TypeVar("K")
MAX_PAGE = 200
# Our cursors are a few dozen characters; a longer one is not ours and is not decoded.
MAX_CURSOR = 100


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[T]
    has_next_page: bool
    end_cursor: str | None


@dataclass(frozen=True, slots=True)
class KeyKind(Generic[K]):
    """How a sort key travels inside a cursor: a prefix naming the kind, and an integer."""

    prefix: str
    to_int: Callable[[K], int]
    from_int: Callable[[int], K]


def _identity(value: int) -> int:
    return value


def _from_epoch(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _to_epoch(moment: datetime) -> int:
    return int(moment.timestamp())


INTEGER_KEY: KeyKind[int] = KeyKind("k", _identity, _identity)
# Whole seconds: time keys that page (candle open times) are aligned to their period.
TIME_KEY: KeyKind[datetime] = KeyKind("t", _to_epoch, _from_epoch)


def encode_cursor(key: int, *, prefix: str = "k") -> str:
    return base64.urlsafe_b64encode(f"{prefix}:{key}".encode()).decode()


def decode_cursor(cursor: str, *, prefix: str = "k") -> int:
    if len(cursor) > MAX_CURSOR:
        raise InvalidInput("malformed cursor", field="after")
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("malformed cursor", field="after") from None
    kind, _, key = text.partition(":")
    # A cursor of another kind (an id where a time is expected) is as malformed as garbage; so
    # is a key that no 64-bit column holds, or digits other than 0-9 ("²" is a digit to Python).
    if kind != prefix or not key.isascii() or not key.isdigit() or len(key) > 18:
        raise InvalidInput("malformed cursor", field="after")
    return int(key)


async def paginate(
    session: AsyncSession,
    query: Select[Any],
    key: InstrumentedAttribute[Any],
    *,
    first: int,
    after: str | None,
    kind: KeyKind[Any] = INTEGER_KEY,
    max_first: int = MAX_PAGE,
    newest_first: bool = False,
) -> Page[Any]:
    """`first` rows after the cursor, by `key` ascending (descending when `newest_first`)."""
    if not 1 <= first <= max_first:
        raise InvalidInput(f"first must be between 1 and {max_first}", field="first")
    if after is not None:
        try:
            cursor = kind.from_int(decode_cursor(after, prefix=kind.prefix))
        except (ValueError, OverflowError, OSError):  # a time key past the calendar's end
            raise InvalidInput("malformed cursor", field="after") from None
        query = query.where(key < cursor if newest_first else key > cursor)
    order = key.desc() if newest_first else key
    rows = list((await session.scalars(query.order_by(order).limit(first + 1))).all())
    has_next = len(rows) > first
    items = rows[:first]
    last = kind.to_int(getattr(items[-1], key.key)) if items else None
    end = None if last is None else encode_cursor(last, prefix=kind.prefix)
    return Page(items=items, has_next_page=has_next, end_cursor=end)
