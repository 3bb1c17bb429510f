"""The torture run's clients: random trading over GraphQL, several clients per user, counted.

Each client is a closed loop (its next request leaves when its answer is in), acting as one
user that other clients act as too, so one account is written by several requests at once; each
request in flight has an HTTP connection of its own. Collisions are made on purpose as well: a
pair of requests sent at once, cancelling one order twice or placing one clientOrderId twice.
What the pair answers tells whether the race was decided under the lock (one cancel and one
CONFLICT; one order for both placements).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from app.order.accounting import round_to_step

JSON = dict[str, Any]

PLACE = """mutation($input: PlaceOrderInput!) {
  placeOrder(input: $input) { id status clientOrderId } }"""
CANCEL = "mutation($id: ID!) { cancelOrder(id: $id) { id status } }"
CANCEL_ALL = "mutation { cancelAllOrders { id } }"
CLOSE = "mutation($symbol: String!) { closePosition(symbol: $symbol) { id status } }"
RESET = "mutation { resetPaperAccount { balance reserved } }"
PORTFOLIO = "{ portfolio { balance reserved available equity realizedPnl } }"
POSITIONS = "{ positions { symbol quantity averagePrice } }"
OPEN_ORDERS = "{ orders(status: OPEN, first: 50) { nodes { id } } }"
TICKER = "query($symbol: String!) { ticker(symbol: $symbol) { price } }"

OPEN_STATUSES = {"NEW", "OPEN", "PARTIALLY_FILLED"}
# The cash an order is worth, in the quote currency: small beside the 10,000 an account starts
# with, so that many orders rest at once and a run sees rejections without living on them.
NOTIONAL = (15, 250)
# How far from the last price limits and stops are set: the simulated walk moves about 0.05 %
# a tick, so resting orders both fill on ticks and get cancelled before they do.
SPREAD = 0.003


@dataclass(frozen=True, slots=True)
class Market:
    symbol: str
    tick: Decimal
    step: Decimal


@dataclass
class Trader:
    """One user, shared by several clients: what they have learned of its books."""

    token: str
    open_orders: list[str] = field(default_factory=list)
    held: dict[str, Decimal] = field(default_factory=dict)
    # clientOrderId -> the input placed with it and the order it gave, for retries.
    placed: dict[str, tuple[JSON, str]] = field(default_factory=dict)

    def opened(self, order_id: str) -> None:
        self.open_orders = [*self.open_orders[-49:], order_id]

    def closed(self, order_id: str) -> None:
        if order_id in self.open_orders:
            self.open_orders.remove(order_id)


@dataclass(frozen=True, slots=True)
class Answer:
    outcome: str  # "ok", the error's code, "HTTP <status>" or "transport <exception>"
    data: JSON | None = None
    order_id: str | None = None  # placeOrder's order, from its data or ORDER_REJECTED's orderId
    message: str | None = None


@dataclass
class Tally:
    """What the run saw; kinds are the root field names."""

    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    variants: Counter[str] = field(default_factory=Counter)
    collisions: Counter[str] = field(default_factory=Counter)
    anomalies: Counter[str] = field(default_factory=Counter)
    http_5xx: int = 0
    transport_errors: int = 0  # no answer: a broken connection, or none within the timeout
    internal_errors: int = 0
    deadlock_answers: int = 0
    examples: list[str] = field(default_factory=list)
    # The first message of each refusal, by kind and code: what the counts stand for.
    messages: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def operations(self) -> int:
        return sum(self.outcomes.values())

    def by_kind(self) -> Counter[str]:
        kinds: Counter[str] = Counter()
        for (kind, _), count in self.outcomes.items():
            kinds[kind] += count
        return kinds

    def example(self, text: str) -> None:
        if len(self.examples) < 10:
            self.examples.append(text[:500])

    def record(self, kind: str, status: int, body: bytes) -> Answer:
        answer = _answer(status, body)
        self.outcomes[kind, answer.outcome] += 1
        if answer.message is not None:
            self.messages.setdefault((kind, answer.outcome), answer.message)
        if status >= 500:
            self.http_5xx += 1
        if answer.outcome == "INTERNAL_SERVER_ERROR":
            self.internal_errors += 1
        if b"deadlock" in body.lower():
            self.deadlock_answers += 1
        if status >= 500 or answer.outcome == "INTERNAL_SERVER_ERROR":
            self.example(f"{kind}: HTTP {status} {body[:300]!r}")
        return answer


def _answer(status: int, body: bytes) -> Answer:
    if status != 200:
        return Answer(f"HTTP {status}")
    try:
        payload = json.loads(body)
    except ValueError:
        return Answer("HTTP 200 without JSON")
    errors = payload.get("errors") or []
    if not errors:
        data: JSON = payload["data"]
        placed = data.get("placeOrder")
        return Answer("ok", data, placed["id"] if placed else None)
    extensions = errors[0].get("extensions") or {}
    code = str(extensions.get("code", "no code"))
    return Answer(code, None, extensions.get("orderId"), str(errors[0].get("message")))


@dataclass
class Floor:
    """What all the clients of a run share: the connections, the markets and their last
    prices (kept fresh by the caller), the tally, and the numbers of clientOrderIds."""

    http: httpx.AsyncClient
    markets: list[Market]
    prices: dict[str, Decimal]
    tally: Tally = field(default_factory=Tally)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class Client:
    """One closed loop: pick an operation, send it, learn from the answer, again."""

    def __init__(self, floor: Floor, trader: Trader, rng: random.Random) -> None:
        self.http, self.markets, self.prices = floor.http, floor.markets, floor.prices
        self.tally, self.ids = floor.tally, floor.ids
        self.trader, self.rng = trader, rng
        self.operations: list[tuple[Callable[[], Awaitable[None]], float]] = [
            (self.place, 40),
            (self.cancel, 16),
            (self.cancel_all, 3),
            (self.close_position, 5),
            (self.reset, 0.4),
            (self.read_portfolio, 10),
            (self.read_positions, 10),
            (self.read_open_orders, 10),
        ]

    async def run(
        self,
        deadline: float,
        *,
        reset_at: float | None = None,
        until: Callable[[], bool] | None = None,
        at_most: float | None = None,
    ) -> None:
        """Operations until `deadline`, and past it, when `until` is given, until it holds or
        `at_most` is reached; and one reset once `reset_at` has passed, so that even a short
        run resets every account while its clients trade (by chance it might not)."""
        loop = asyncio.get_running_loop()
        operations, weights = zip(*self.operations, strict=True)

        def going(now: float) -> bool:
            if now < deadline:
                return True
            return until is not None and not until() and now < (at_most or deadline)

        while going(now := loop.time()):
            if reset_at is not None and now >= reset_at:
                reset_at = None
                await self.reset()
                continue
            await self.rng.choices(operations, weights)[0]()

    async def call(self, kind: str, query: str, variables: JSON | None = None) -> Answer:
        headers = {"authorization": f"Bearer {self.trader.token}"}
        body = {"query": query, "variables": variables or {}}
        try:
            response = await self.http.post("/graphql", json=body, headers=headers)
        except httpx.HTTPError as exc:
            outcome = f"transport {type(exc).__name__}"
            self.tally.outcomes[kind, outcome] += 1
            self.tally.transport_errors += 1
            self.tally.example(f"{kind}: {outcome}: {exc}")
            return Answer(outcome)
        return self.tally.record(kind, response.status_code, response.content)

    # Placing -----------------------------------------------------------------------------

    async def place(self) -> None:
        draw = self.rng.random()
        if draw < 0.05 and self.trader.placed:
            await self._retry_later()
        elif draw < 0.15:
            await self._retry_at_once()
        else:
            with_id = draw < 0.5
            await self._place(self.order_input(client_order_id=with_id))

    async def _place(self, order: JSON) -> Answer:
        answer = await self.call("placeOrder", PLACE, {"input": order})
        self.variants[order["type"]] += 1
        self.variants[order["timeInForce"]] += 1
        self.variants[order["side"]] += 1
        self.variants["with clientOrderId" if "clientOrderId" in order else "no clientOrderId"] += 1
        if answer.data is not None:
            placed = answer.data["placeOrder"]
            if placed["status"] in OPEN_STATUSES:
                self.trader.opened(placed["id"])
        if answer.order_id is not None and "clientOrderId" in order:
            self.trader.placed.setdefault(order["clientOrderId"], (order, answer.order_id))
        return answer

    @property
    def variants(self) -> Counter[str]:
        return self.tally.variants

    async def _retry_at_once(self) -> None:
        """One clientOrderId placed twice at once: both answers must name the same order."""
        order = self.order_input(client_order_id=True)
        first, second = await asyncio.gather(self._place(order), self._place(order))
        self.variants["retry pair"] += 1
        if first.order_id is None or second.order_id is None:
            return
        if first.order_id == second.order_id:
            self.tally.collisions["retry pair answered with one order"] += 1
        else:
            self.tally.anomalies["one clientOrderId placed two orders"] += 1
            self.tally.example(f"clientOrderId {order['clientOrderId']}: {first} {second}")

    async def _retry_later(self) -> None:
        """A clientOrderId placed again later: the answer names the first order."""
        client_order_id = self.rng.choice(list(self.trader.placed))
        order, order_id = self.trader.placed[client_order_id]
        answer = await self._place(order)
        self.variants["retry later"] += 1
        if answer.order_id is not None and answer.order_id != order_id:
            self.tally.anomalies["a retried clientOrderId gave another order"] += 1
            self.tally.example(f"clientOrderId {client_order_id}: {order_id} then {answer}")

    def order_input(self, *, client_order_id: bool) -> JSON:
        market = self.rng.choice(self.markets)
        last = self.prices[market.symbol]
        kind = self.rng.choices(["MARKET", "LIMIT", "STOP", "STOP_LIMIT"], [30, 40, 15, 15])[0]
        side = "BUY" if self.rng.random() < 0.55 else "SELL"
        order: JSON = {
            "symbol": market.symbol,
            "side": side,
            "type": kind,
            "quantity": str(self._quantity(market, last, side)),
            "timeInForce": self.rng.choices(["GTC", "IOC", "FOK"], [70, 15, 15])[0],
        }
        if kind in ("LIMIT", "STOP_LIMIT"):
            order["price"] = str(self._near(market, last, 0))
        if kind in ("STOP", "STOP_LIMIT"):
            # Mostly on the side a stop waits on (above for a buy); now and then through the
            # market, where it fires at once.
            away = 1 if side == "BUY" else -1
            away = away if self.rng.random() < 0.8 else -away
            order["stopPrice"] = str(self._near(market, last, away))
        if client_order_id:
            order["clientOrderId"] = f"t-{next(self.ids)}"
        return order

    def _quantity(self, market: Market, last: Decimal, side: str) -> Decimal:
        held = self.trader.held.get(market.symbol, Decimal(0))
        if side == "SELL" and held > 0 and self.rng.random() < 0.8:
            wanted = held * Decimal(self.rng.uniform(0.1, 1.0))
        else:
            wanted = Decimal(self.rng.uniform(*NOTIONAL)) / last
        return max(round_to_step(wanted, market.step, up=False), market.step)

    def _near(self, market: Market, last: Decimal, direction: int) -> Decimal:
        """A price within SPREAD of the last one: above it (1), below (-1) or either (0)."""
        low = 0.0 if direction > 0 else -SPREAD
        high = 0.0 if direction < 0 else SPREAD
        price = last * (1 + Decimal(self.rng.uniform(low, high)))
        return max(round_to_step(price, market.tick, up=False), market.tick)

    # Ending orders and positions ------------------------------------------------------------

    async def cancel(self) -> None:
        if not self.trader.open_orders:
            await self.read_open_orders()
            return
        order_id = self.rng.choice(self.trader.open_orders)
        if self.rng.random() < 0.5:
            await self._cancel(order_id)
            return
        # Two clients cancel one order at once: one succeeds, the other is a CONFLICT.
        first, second = await asyncio.gather(self._cancel(order_id), self._cancel(order_id))
        self.variants["cancel pair"] += 1
        outcomes = sorted([first.outcome, second.outcome])
        if outcomes == ["ok", "ok"]:
            self.tally.anomalies["one order cancelled twice"] += 1
            self.tally.example(f"order {order_id} cancelled twice: {first} {second}")
        elif outcomes == ["CONFLICT", "ok"]:
            self.tally.collisions["cancel pair: one cancelled, one CONFLICT"] += 1

    async def _cancel(self, order_id: str) -> Answer:
        answer = await self.call("cancelOrder", CANCEL, {"id": order_id})
        if answer.outcome in ("ok", "CONFLICT", "NOT_FOUND"):
            self.trader.closed(order_id)
        return answer

    async def cancel_all(self) -> None:
        if (await self.call("cancelAllOrders", CANCEL_ALL)).outcome == "ok":
            self.trader.open_orders = []

    async def close_position(self) -> None:
        held = [symbol for symbol, quantity in self.trader.held.items() if quantity > 0]
        if held and self.rng.random() < 0.8:
            symbol = self.rng.choice(held)
        else:
            symbol = self.rng.choice(self.markets).symbol
        if (await self.call("closePosition", CLOSE, {"symbol": symbol})).outcome == "ok":
            self.trader.held[symbol] = Decimal(0)

    async def reset(self) -> None:
        if (await self.call("resetPaperAccount", RESET)).outcome == "ok":
            self.trader.open_orders, self.trader.held = [], {}

    # Reads ----------------------------------------------------------------------------------

    async def read_portfolio(self) -> None:
        await self.call("portfolio", PORTFOLIO)

    async def read_positions(self) -> None:
        answer = await self.call("positions", POSITIONS)
        if answer.data is not None:
            positions = answer.data["positions"]
            self.trader.held = {p["symbol"]: Decimal(p["quantity"]) for p in positions}

    async def read_open_orders(self) -> None:
        answer = await self.call("orders", OPEN_ORDERS)
        if answer.data is not None:
            self.trader.open_orders = [node["id"] for node in answer.data["orders"]["nodes"]]
