"""orders, accounts, positions and trades

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column(
            "balance", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column(
            "reserved", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_accounts_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("owner_id", name=op.f("uq_accounts_owner_id")),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("bot_id", sa.Integer(), nullable=True),
        sa.Column("symbol_id", sa.Integer(), nullable=False),
        sa.Column("client_order_id", sa.String(length=64), nullable=True),
        sa.Column(
            "side",
            sa.Enum("BUY", "SELL", name="order_side", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "type",
            sa.Enum(
                "MARKET",
                "LIMIT",
                "STOP",
                "STOP_LIMIT",
                name="order_type",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column(
            "time_in_force",
            sa.Enum("GTC", "IOC", "FOK", name="time_in_force", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "quantity", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column("price", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=True),
        sa.Column(
            "stop_price", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=True
        ),
        sa.Column(
            "status",
            sa.Enum(
                "NEW",
                "OPEN",
                "PARTIALLY_FILLED",
                "FILLED",
                "CANCELED",
                "REJECTED",
                "EXPIRED",
                name="order_status",
                native_enum=False,
            ),
            nullable=False,
        ),
        sa.Column(
            "filled_quantity",
            sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "average_fill_price",
            sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"),
            nullable=True,
        ),
        sa.Column("fees", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False),
        sa.Column(
            "reserved", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column("reject_reason", sa.String(length=255), nullable=True),
        sa.Column("triggered", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_orders_owner_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["symbol_id"],
            ["symbols.id"],
            name=op.f("fk_orders_symbol_id_symbols"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("owner_id", "client_order_id", name="uq_orders_owner_client_order_id"),
    )
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_index("ix_orders_owner_id_id", ["owner_id", "id"], unique=False)
        batch_op.create_index("ix_orders_symbol_id_status", ["symbol_id", "status"], unique=False)

    op.create_table(
        "positions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("bot_key", sa.Integer(), server_default="0", nullable=False),
        sa.Column("symbol_id", sa.Integer(), nullable=False),
        sa.Column(
            "quantity", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column(
            "average_price",
            sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "realized_pnl", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_positions_owner_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["symbol_id"],
            ["symbols.id"],
            name=op.f("fk_positions_symbol_id_symbols"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
        sa.UniqueConstraint(
            "owner_id", "bot_key", "symbol_id", name="uq_positions_owner_bot_symbol"
        ),
    )
    op.create_table(
        "trades",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("bot_id", sa.Integer(), nullable=True),
        sa.Column("symbol_id", sa.Integer(), nullable=False),
        sa.Column(
            "side",
            sa.Enum("BUY", "SELL", name="trade_side", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "quantity", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column(
            "price", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column("fee", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False),
        sa.Column(
            "realized_pnl", sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"), nullable=False
        ),
        sa.Column("executed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_trades_order_id_orders"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_trades_owner_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["symbol_id"],
            ["symbols.id"],
            name=op.f("fk_trades_symbol_id_symbols"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trades")),
    )
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trades_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_trades_owner_id"), ["owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_trades_owner_id"))
        batch_op.drop_index(batch_op.f("ix_trades_order_id"))

    op.drop_table("trades")
    op.drop_table("positions")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_symbol_id_status")
        batch_op.drop_index("ix_orders_owner_id_id")

    op.drop_table("orders")
    op.drop_table("accounts")
