"""the books refuse a wrong state: CHECK constraints on cash, reserves, orders, trades and
positions; accounts remember when they were last reset

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Money is text on SQLite: each column is compared as a number (app/order/models.py).
CHECKS = {
    "accounts": {
        "balance_not_negative": "CAST(balance AS NUMERIC) >= 0",
        "reserved_not_negative": "CAST(reserved AS NUMERIC) >= 0",
        "reserved_within_balance": "CAST(reserved AS NUMERIC) <= CAST(balance AS NUMERIC)",
    },
    "orders": {
        "quantity_positive": "CAST(quantity AS NUMERIC) > 0",
        "filled_within_quantity": "CAST(filled_quantity AS NUMERIC) >= 0 AND CAST(filled_quantity AS NUMERIC) <= CAST(quantity AS NUMERIC)",
        "reserved_not_negative": "CAST(reserved AS NUMERIC) >= 0",
        "fees_not_negative": "CAST(fees AS NUMERIC) >= 0",
        "price_positive": "price IS NULL OR CAST(price AS NUMERIC) > 0",
        "stop_price_positive": "stop_price IS NULL OR CAST(stop_price AS NUMERIC) > 0",
    },
    "trades": {
        "quantity_positive": "CAST(quantity AS NUMERIC) > 0",
        "price_positive": "CAST(price AS NUMERIC) > 0",
        "fee_not_negative": "CAST(fee AS NUMERIC) >= 0",
    },
    "positions": {
        "quantity_not_negative": "CAST(quantity AS NUMERIC) >= 0",
        "average_price_not_negative": "CAST(average_price AS NUMERIC) >= 0",
    },
}


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("reset_at", sa.DateTime(timezone=True), nullable=True))
    for table, rules in CHECKS.items():
        with op.batch_alter_table(table) as batch:
            for name, rule in rules.items():
                batch.create_check_constraint(name, sa.text(rule))


def downgrade() -> None:
    for table, rules in reversed(CHECKS.items()):
        with op.batch_alter_table(table) as batch:
            for name in rules:
                batch.drop_constraint(op.f(f"ck_{table}_{name}"), type_="check")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("reset_at")
