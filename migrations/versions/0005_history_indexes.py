"""indexes for a bot's (and an owner's) order and trade history, newest first

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = [
    ("ix_orders_bot_id_id", "orders", ["bot_id", "id"]),
    ("ix_trades_owner_id_id", "trades", ["owner_id", "id"]),
    ("ix_trades_bot_id_id", "trades", ["bot_id", "id"]),
    ("ix_positions_bot_key", "positions", ["bot_key"]),
]


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
