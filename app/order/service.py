"""The order domain's verbs, split by verb: placing, matching, cancelling, and the reads.

Every writing path follows one lock order (app/order/ledger.py, docs/architecture.md).
"""

from __future__ import annotations

from app.order.cancelling import cancel_all_orders as cancel_all_orders
from app.order.cancelling import cancel_order as cancel_order
from app.order.cancelling import close_position as close_position
from app.order.cancelling import reset_account as reset_account
from app.order.matching import match_orders as match_orders
from app.order.placing import OrderRejected as OrderRejected
from app.order.placing import place_order as place_order
from app.order.queries import get_order as get_order
from app.order.queries import list_orders as list_orders
from app.order.queries import list_positions as list_positions
from app.order.queries import list_trades as list_trades
from app.order.queries import portfolio as portfolio
