"""bots, and the foreign keys of orders and trades to them

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("strategy_id", sa.Integer(), nullable=False),
        sa.Column("symbol_id", sa.Integer(), nullable=False),
        sa.Column(
            "timeframe",
            sa.Enum(
                "1m", "5m", "15m", "1h", "4h", "1d", name="timeframe", native_enum=False, length=8
            ),
            nullable=False,
        ),
        sa.Column(
            "mode",
            sa.Enum("PAPER", "LIVE", name="bot_mode", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column(
            "allocated_capital",
            sa.Numeric(36, 18).with_variant(sa.String(64), "sqlite"),
            nullable=False,
        ),
        sa.Column(
            "status",
            sa.Enum(
                "CREATED",
                "RUNNING",
                "PAUSED",
                "STOPPED",
                "ERROR",
                name="bot_status",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("error_reason", sa.String(length=500), nullable=True),
        sa.Column("last_candle_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_bots_owner_id_users"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["strategy_id"],
            ["strategies.id"],
            name=op.f("fk_bots_strategy_id_strategies"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["symbol_id"],
            ["symbols.id"],
            name=op.f("fk_bots_symbol_id_symbols"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bots")),
        sa.UniqueConstraint("owner_id", "name", name="uq_bots_owner_name"),
        # Bot ids are never reused (see app/bot/models.py); PostgreSQL sequences never reuse.
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.create_index("ix_bots_owner_id_id", ["owner_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_bots_strategy_id"), ["strategy_id"], unique=False)
        batch_op.create_index(
            "ix_bots_symbol_id_timeframe_status",
            ["symbol_id", "timeframe", "status"],
            unique=False,
        )

    # Orders and trades outlive their bot as history: deleting a bot leaves them with no bot.
    # Batch mode, so SQLite (which cannot add a constraint to a table) rebuilds the tables.
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_orders_bot_id_bots"), "bots", ["bot_id"], ["id"], ondelete="SET NULL"
        )
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_trades_bot_id_bots"), "bots", ["bot_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_trades_bot_id_bots"), type_="foreignkey")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_orders_bot_id_bots"), type_="foreignkey")
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.drop_index("ix_bots_symbol_id_timeframe_status")
        batch_op.drop_index(batch_op.f("ix_bots_strategy_id"))
        batch_op.drop_index("ix_bots_owner_id_id")

    op.drop_table("bots")
