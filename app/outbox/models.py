"""Stored events and each channel's count of them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, utcnow

# 64 bits on PostgreSQL; SQLite's INTEGER PRIMARY KEY is already 64 bits (and only that spelling
# is its rowid).
Id = BigInteger().with_variant(Integer(), "sqlite")
UNRELAYED = text("relayed_at IS NULL")


class OutboxEvent(Base):
    """One event, written in the transaction that made it. `number` counts the events of its
    channel from 1 without a hole among committed rows (see store.py); `relayed_at` is set once
    the broker has it. Relayed rows go after the retention window."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    channel: Mapped[str] = mapped_column(String(200))
    number: Mapped[int] = mapped_column(BigInteger())
    kind: Mapped[str] = mapped_column(String(64))
    # The event's payload as JSON text, exactly as subscribers receive it.
    payload: Mapped[str] = mapped_column(Text())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    relayed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("channel", "number"),
        # What the relay looks for: few rows, the ones a publish could not deliver.
        Index("ix_outbox_unrelayed", "id", postgresql_where=UNRELAYED, sqlite_where=UNRELAYED),
    )


class OutboxChannel(Base):
    """How many events a channel has had: the number of its latest. The row is locked from the
    moment a transaction numbers its events until it commits (store.py says why)."""

    __tablename__ = "outbox_channels"

    channel: Mapped[str] = mapped_column(String(200), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger())
