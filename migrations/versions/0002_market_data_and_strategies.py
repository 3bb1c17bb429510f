"""market data and strategies

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "symbols",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("base", sa.String(length=16), nullable=False),
        sa.Column("quote", sa.String(length=16), nullable=False),
        sa.Column(
            "price_tick", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column(
            "quantity_step",
            sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "min_notional", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_symbols")),
        sa.UniqueConstraint("name", name=op.f("uq_symbols_name")),
    )
    op.create_table(
        "candles",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("symbol_id", sa.Integer(), nullable=False),
        sa.Column(
            "timeframe",
            sa.Enum(
                "1m", "5m", "15m", "1h", "4h", "1d", name="timeframe", native_enum=False, length=8
            ),
            nullable=False,
        ),
        sa.Column("open_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("open", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False),
        sa.Column("high", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False),
        sa.Column("low", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False),
        sa.Column(
            "close", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column(
            "volume", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["symbol_id"],
            ["symbols.id"],
            name=op.f("fk_candles_symbol_id_symbols"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_candles")),
        sa.UniqueConstraint("symbol_id", "timeframe", "open_time", name="uq_candles_series_time"),
    )
    op.create_table(
        "strategies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_strategies_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_strategies")),
        sa.UniqueConstraint("owner_id", "name", name="uq_strategies_owner_name"),
    )
    with op.batch_alter_table("strategies", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_strategies_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "tickers",
        sa.Column("symbol_id", sa.Integer(), nullable=False),
        sa.Column(
            "price", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["symbol_id"],
            ["symbols.id"],
            name=op.f("fk_tickers_symbol_id_symbols"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("symbol_id", name=op.f("pk_tickers")),
    )
    _seed_symbols()


# The default markets, so a fresh install has something to trade: (name, base, quote, price
# tick, quantity step, minimum notional in the quote currency).
DEFAULT_SYMBOLS = [
    ("BTC-USD", "BTC", "USD", "0.01", "0.00001", "10"),
    ("ETH-USD", "ETH", "USD", "0.01", "0.0001", "10"),
    ("SOL-USD", "SOL", "USD", "0.001", "0.001", "5"),
]


def _seed_symbols() -> None:
    money = sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite")
    symbols = sa.table(
        "symbols",
        sa.column("name", sa.String),
        sa.column("base", sa.String),
        sa.column("quote", sa.String),
        sa.column("price_tick", money),
        sa.column("quantity_step", money),
        sa.column("min_notional", money),
        sa.column("is_active", sa.Boolean),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    now = datetime.now(UTC)
    op.bulk_insert(
        symbols,
        [
            {
                "name": name,
                "base": base,
                "quote": quote,
                "price_tick": tick if sqlite else Decimal(tick),
                "quantity_step": step if sqlite else Decimal(step),
                "min_notional": notional if sqlite else Decimal(notional),
                "is_active": True,
                "created_at": now,
            }
            for name, base, quote, tick, step, notional in DEFAULT_SYMBOLS
        ],
    )


def downgrade() -> None:
    op.drop_table("tickers")
    with op.batch_alter_table("strategies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_strategies_owner_id"))

    op.drop_table("strategies")
    op.drop_table("candles")
    op.drop_table("symbols")
