"""The soak's clients: closed loops of mixed trading reads and orders, every call recorded.

Each client acts as one user (a few clients share a user, so one account is written by several
requests at once), talks to one API process over one keep-alive connection (bench/load.py's
hand-written HTTP/1.1), and gives each request `TIMEOUT` seconds: a request without an answer
by then is abandoned with its connection, as an impatient client would. Every call is kept
with its times, its process and its outcome, for the report to cut by minute and by outage.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from app.order.accounting import round_to_step
from bench.load import Connection, ProtocolError, graphql
from bench.traders import CANCEL, NOTIONAL, OPEN_STATUSES, PLACE, SPREAD, TICKER, Market, Trader

JSON = dict[str, Any]
# A client's patience: a mutation without an answer by then is "unanswered" (the client cannot
# tell whether the order exists; only a retry with its clientOrderId would find out).
TIMEOUT = 10.0
NO_ANSWER = "no answer in time"
CONNECTION_LOST = "connection lost"
# Codes that say the service could not serve, rather than a refusal of what was asked.
UNAVAILABLE = {"INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE"}

PORTFOLIO = """{ portfolio { balance reserved available equity realizedPnl unrealizedPnl }
  positions { symbol quantity averagePrice } }"""
ORDERS_PAGE = """{ orders(first: 20) { nodes { id symbol side type status quantity price
  filledQuantity averageFillPrice createdAt } pageInfo { endCursor hasNextPage } } }"""
ME = "{ me { id email displayName role } }"
MARKET_DATA = """query($symbol: String!) { ticker(symbol: $symbol) { price change24h updatedAt }
  candles(symbol: $symbol, timeframe: M1, first: 30) { nodes { openTime open high low close
  volume } } }"""


@dataclass(frozen=True, slots=True)
class Call:
    start: float  # time.monotonic()
    end: float
    kind: str
    mutation: bool
    server: int  # which API process (0, 1, ...)
    outcome: str  # "ok", the error's extensions.code, "HTTP <status>", NO_ANSWER, CONNECTION_LOST
    status: int  # the HTTP status; 0 without an answer
    detail: str = ""  # the start of a failed answer
    reference: str | None = None  # a placement's clientOrderId, to look it up afterwards

    @property
    def answered(self) -> bool:
        return self.status != 0

    @property
    def failed(self) -> bool:
        """Not served: no answer, a 5xx, or a code saying the service was unavailable. The
        other errors (ORDER_REJECTED, CONFLICT ...) are answers, refusals of what was asked."""
        return (
            not self.answered
            or self.status >= 500
            or self.outcome in UNAVAILABLE
            or self.outcome.startswith("HTTP")
        )

    @property
    def server_error(self) -> bool:
        """A 500: a plain HTTP 5xx (not a refusal with a code) or INTERNAL_SERVER_ERROR."""
        if self.outcome == "INTERNAL_SERVER_ERROR" or self.status == 500:
            return True
        return self.status >= 500 and self.outcome.startswith("HTTP")


def classify(status: int, body: bytes) -> tuple[str, JSON | None]:
    """The outcome of an answer (see `Call.outcome`) and its data when it succeeded."""
    try:
        payload = json.loads(body)
    except ValueError:
        return f"HTTP {status}", None
    if not isinstance(payload, dict):
        return f"HTTP {status}", None
    if errors := payload.get("errors"):
        code = _extensions(errors).get("code")
        return (str(code) if code else f"HTTP {status} without a code"), None
    if status != 200 or not isinstance(payload.get("data"), dict):
        return f"HTTP {status}", None
    data: JSON = payload["data"]
    return "ok", data


def _extensions(errors: object) -> JSON:
    first = errors[0] if isinstance(errors, list) and errors else {}
    extensions = first.get("extensions") if isinstance(first, dict) else None
    return extensions if isinstance(extensions, dict) else {}


def retry_after(body: bytes) -> float:
    """The seconds a refusal asks the client to wait (`extensions.retryAfter`), else 0."""
    try:
        value = _extensions(json.loads(body).get("errors")).get("retryAfter", 0)
        return min(float(value), TIMEOUT)
    except (ValueError, TypeError, AttributeError):
        return 0.0


@dataclass
class Floor:
    """What every client of a run shares."""

    markets: list[Market]
    prices: dict[str, Decimal]
    tag: str  # makes this run's clientOrderIds its own
    calls: list[Call] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


class Client:
    """One closed loop against one API process: pick an operation, send it, learn, again."""

    def __init__(
        self,
        floor: Floor,
        trader: Trader,
        *,
        address: tuple[str, int],
        server: int,
        rng: random.Random,
        think: float = 0.0,
    ) -> None:
        self.floor, self.trader, self.rng, self.think = floor, trader, rng, think
        self.address, self.server = address, server
        self.host = f"{address[0]}:{address[1]}"
        self.connection: Connection | None = None
        self.wait = 0.0  # the last refusal's retryAfter
        self.operations: list[tuple[Callable[[], Awaitable[None]], float]] = [
            (self.read_portfolio, 14),
            (self.read_orders, 14),
            (self.read_me, 10),
            (self.read_market, 16),
            (self.place_market, 16),
            (self.place_limit, 18),
            (self.cancel, 12),
        ]

    async def run(self, deadline: float) -> None:
        operations, weights = zip(*self.operations, strict=True)
        try:
            while time.monotonic() < deadline:
                await self.rng.choices(operations, weights)[0]()
                # A refusal's retryAfter is honoured, as a well-behaved client does.
                pause = self.wait + (self.rng.uniform(0, 2 * self.think) if self.think else 0)
                self.wait = 0.0
                if pause:
                    await asyncio.sleep(min(pause, deadline - time.monotonic()))
        finally:
            self._drop()

    def _drop(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    async def call(
        self,
        kind: str,
        query: str,
        variables: JSON | None = None,
        *,
        mutation: bool = False,
        reference: str | None = None,
    ) -> JSON | None:
        headers = {"authorization": f"Bearer {self.trader.token}"}
        wire = graphql(query, variables, headers=headers).encode(self.host)
        start = time.monotonic()
        status, detail, data = 0, "", None
        try:
            async with asyncio.timeout(TIMEOUT):
                if self.connection is None:
                    self.connection = Connection(*await asyncio.open_connection(*self.address))
                status, body = await self.connection.exchange(wire)
            outcome, data = classify(status, body)
            if outcome != "ok":
                detail = body[:300].decode("utf-8", "replace")
                self.wait = retry_after(body)
            if not self.connection.reusable:
                self._drop()
        except TimeoutError:
            outcome = NO_ANSWER
            self._drop()
        except (OSError, EOFError, ProtocolError, ValueError, asyncio.LimitOverrunError) as exc:
            outcome, detail = CONNECTION_LOST, f"{type(exc).__name__}: {exc}"
            self._drop()
        end = time.monotonic()
        self.floor.calls.append(
            Call(start, end, kind, mutation, self.server, outcome, status, detail, reference)
        )
        return data

    # Reads -------------------------------------------------------------------------------

    async def read_portfolio(self) -> None:
        if (data := await self.call("portfolio", PORTFOLIO)) is not None:
            self.trader.held = {p["symbol"]: Decimal(p["quantity"]) for p in data["positions"]}

    async def read_orders(self) -> None:
        if (data := await self.call("orders", ORDERS_PAGE)) is not None:
            nodes = data["orders"]["nodes"]
            self.trader.open_orders = [n["id"] for n in nodes if n["status"] in OPEN_STATUSES]

    async def read_me(self) -> None:
        await self.call("me", ME)

    async def read_market(self) -> None:
        symbol = self.rng.choice(self.floor.markets).symbol
        await self.call("marketData", MARKET_DATA, {"symbol": symbol})

    # Orders ------------------------------------------------------------------------------

    async def place_market(self) -> None:
        market, side, quantity = self._pick()
        await self._place("placeOrder MARKET", market, {"side": side, "quantity": quantity})

    async def place_limit(self) -> None:
        market, side, quantity = self._pick()
        last = self.floor.prices[market.symbol]
        # Within SPREAD of the last price either way: some cross and fill at once, the others
        # rest and fill on a later tick of the worker's market, or are cancelled first.
        price = last * (1 + Decimal(self.rng.uniform(-SPREAD, SPREAD)))
        order = {
            "side": side,
            "quantity": quantity,
            "price": str(max(round_to_step(price, market.tick, up=False), market.tick)),
        }
        await self._place("placeOrder LIMIT", market, {**order, "type": "LIMIT"})

    def _pick(self) -> tuple[Market, str, str]:
        """A market, a side and a quantity: sells of what the user holds, buys of a small sum."""
        market = self.rng.choice(self.floor.markets)
        held = self.trader.held.get(market.symbol, Decimal(0))
        if held > 0 and self.rng.random() < 0.45:
            side, wanted = "SELL", held * Decimal(self.rng.uniform(0.2, 1.0))
        else:
            side = "BUY"
            wanted = Decimal(self.rng.uniform(*NOTIONAL)) / self.floor.prices[market.symbol]
        quantity = max(round_to_step(wanted, market.step, up=False), market.step)
        return market, side, str(quantity)

    async def _place(self, kind: str, market: Market, order: JSON) -> None:
        order = {
            "symbol": market.symbol,
            "type": "MARKET",
            "timeInForce": "GTC",
            "clientOrderId": f"{self.floor.tag}-{next(self.floor.ids)}",
            **order,
        }
        reference = order["clientOrderId"]
        data = await self.call(kind, PLACE, {"input": order}, mutation=True, reference=reference)
        if data is not None and data["placeOrder"]["status"] in OPEN_STATUSES:
            self.trader.opened(data["placeOrder"]["id"])

    async def cancel(self) -> None:
        if not self.trader.open_orders:
            await self.read_orders()
            return
        order_id = self.rng.choice(self.trader.open_orders)
        await self.call("cancelOrder", CANCEL, {"id": order_id}, mutation=True)
        self.trader.closed(order_id)


async def follow_prices(
    floor: Floor, *, address: tuple[str, int], token: str, deadline: float
) -> None:
    """Keep `floor.prices` near the market (limit prices are set from them); not measured."""
    host = f"{address[0]}:{address[1]}"
    headers = {"authorization": f"Bearer {token}"}
    connection: Connection | None = None
    while time.monotonic() < deadline:
        for market in floor.markets:
            wire = graphql(TICKER, {"symbol": market.symbol}, headers=headers).encode(host)
            try:
                async with asyncio.timeout(TIMEOUT):
                    if connection is None:
                        connection = Connection(*await asyncio.open_connection(*address))
                    status, body = await connection.exchange(wire)
            except (OSError, EOFError, TimeoutError, ProtocolError, ValueError):
                if connection is not None:
                    connection.close()
                connection = None
                continue
            _, data = classify(status, body)
            if data is not None and data["ticker"] is not None:
                floor.prices[market.symbol] = Decimal(data["ticker"]["price"])
        await asyncio.sleep(1.0)
    if connection is not None:
        connection.close()
