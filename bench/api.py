"""Benchmark the trading API against one server process on PostgreSQL, with realistic data.

    .venv/bin/python -m bench.api [--clients 10] [--seconds 10]

Needs PostgreSQL (`TG_BENCH_POSTGRES_ADMIN`, default the local server's `postgres` database:
a fresh `tg_bench_api` database is made next to it) and Redis (`TG_BENCH_REDIS`, default db 8;
rate limits and events go through it as in production). The data: 10 users, each with 40 bots
and 4,000 orders (three in four filled, with their trades), so the benchmark user's pages come
out of 40,000 orders. Prints requests per second and p50/p95/p99 for each operation, first with
the response cache off (every read executed), then on (repeated reads as a polling client
sends them; each placed order makes the next read a miss for that user).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.bot import service as bot_service
from app.config import load_settings
from app.db import make_engine, make_session_factory, utcnow
from app.market import service as market_service
from app.order.accounting import Side
from app.order.models import Order, OrderStatus, OrderType, Position, TimeInForce, Trade
from app.strategy import service as strategy_service
from app.user import service as user_service
from bench.load import (
    Figures,
    Request,
    bench_database_url,
    fetch,
    fresh_database,
    graphql,
    run,
    server,
)

DATABASE = "tg_bench_api"
USERS, BOTS, ORDERS_PER_BOT = 10, 40, 100
PASSWORD = "bench password 123"
PRICES = {"BTC-USD": Decimal(50000), "ETH-USD": Decimal(3000), "SOL-USD": Decimal(150)}

ORDERS = """{ orders(first: 20) { nodes { id symbol side type status quantity price
  filledQuantity averageFillPrice createdAt bot { id name } }
  pageInfo { endCursor hasNextPage } } }"""
BOTS_PAGE = """{ bots(first: 10) { nodes { id name status symbol
  orders(first: 5) { id side status quantity averageFillPrice }
  trades(first: 5) { id side price quantity fee }
  positions { symbol quantity averagePrice unrealizedPnl } } } }"""
PLACE = """mutation($id: String!) { placeOrder(input: {symbol: "BTC-USD", side: BUY,
  type: MARKET, quantity: "0.001", clientOrderId: $id}) { id status averageFillPrice } }"""


@dataclass(frozen=True)
class Seeded:
    emails: list[str]


def _order_rows(rng: random.Random, owner_id: int, bot_id: int, symbol: tuple[int, str]) -> Any:
    symbol_id, name = symbol
    start = utcnow() - timedelta(days=30)
    for n in range(ORDERS_PER_BOT):
        side = Side.BUY if n % 2 == 0 else Side.SELL
        price = (PRICES[name] * Decimal(rng.uniform(0.9, 1.1))).quantize(Decimal("0.01"))
        quantity = Decimal(rng.randint(1, 50)) / 100 if name != "BTC-USD" else Decimal("0.01")
        status = rng.choices(
            [OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED],
            weights=[75, 20, 5],
        )[0]
        filled = status is OrderStatus.FILLED
        yield {
            "owner_id": owner_id,
            "bot_id": bot_id,
            "symbol_id": symbol_id,
            "side": side,
            "type": OrderType.MARKET if n % 3 else OrderType.LIMIT,
            "time_in_force": TimeInForce.GTC,
            "quantity": quantity,
            "price": None if n % 3 else price,
            "status": status,
            "filled_quantity": quantity if filled else Decimal(0),
            "average_fill_price": price if filled else None,
            "fees": (quantity * price / 1000).quantize(Decimal("1e-8")) if filled else Decimal(0),
            "reject_reason": "insufficient funds" if status is OrderStatus.REJECTED else None,
            "created_at": start + timedelta(minutes=n * 7 + bot_id),
        }


async def _seed_user(session: AsyncSession, number: int, symbols: list[tuple[int, str]]) -> str:
    email = f"bench{number}@example.com"
    user = await user_service.register(
        session, email=email, password=PASSWORD, display_name=f"Bench {number}"
    )
    strategy = await strategy_service.create(
        session, owner_id=user.id, name="cross", kind="SMA_CROSSOVER", parameters=None
    )
    rng = random.Random(number)
    for b in range(BOTS):
        symbol = symbols[b % len(symbols)]
        bot = await bot_service.create(
            session,
            owner_id=user.id,
            name=f"bot {b}",
            strategy_id=strategy.id,
            symbol=symbol[1],
            timeframe="1m",
            allocated_capital=Decimal(1000),
        )
        rows = list(_order_rows(rng, user.id, bot.id, symbol))
        ids = (await session.scalars(insert(Order).returning(Order.id), rows)).all()
        trades = [
            {
                "order_id": order_id,
                "owner_id": user.id,
                "bot_id": bot.id,
                "symbol_id": row["symbol_id"],
                "side": row["side"],
                "quantity": row["quantity"],
                "price": row["average_fill_price"],
                "fee": row["fees"],
                "realized_pnl": -row["fees"],
                "executed_at": row["created_at"],
            }
            for order_id, row in zip(ids, rows, strict=True)
            if row["status"] is OrderStatus.FILLED
        ]
        await session.execute(insert(Trade), trades)
        session.add(
            Position(
                owner_id=user.id,
                bot_key=bot.id,
                symbol_id=symbol[0],
                quantity=Decimal("0.05"),
                average_price=PRICES[symbol[1]],
                realized_pnl=Decimal(0),
            )
        )
    return email


async def seed() -> Seeded:
    database_url = await fresh_database(DATABASE)
    engine = make_engine(database_url)
    async with make_session_factory(engine)() as session:
        symbols = []
        for name, price in PRICES.items():
            found = await market_service.get_symbol_by_name(session, name=name)
            await market_service.set_price(session, symbol_id=found.id, price=price, at=utcnow())
            symbols.append((found.id, name))
        emails = [await _seed_user(session, n, symbols) for n in range(USERS)]
        await session.commit()
    async with engine.connect() as connection:
        # Statistics, as autovacuum would have them on a database that grew to this size.
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text("ANALYZE"))
    await engine.dispose()
    return Seeded(emails)


def _token(base_url: str, email: str) -> str:
    login = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
    answer = json.loads(fetch(base_url, graphql(login, {"e": email, "p": PASSWORD})))
    token: str = answer["data"]["login"]["accessToken"]
    return token


def measure(base_url: str, emails: list[str], *, clients: int, seconds: float) -> list[Figures]:
    tokens = [{"authorization": f"Bearer {_token(base_url, email)}"} for email in emails]
    orders = graphql(ORDERS, headers=tokens[0])
    bots = graphql(BOTS_PAGE, headers=tokens[0])
    # Orders spread over the users, one client order id each: placing goes through the
    # idempotency lookup, the account lock and a fill every time.
    run_id = itertools.count()

    def place(number: int) -> Request:
        headers = tokens[number % len(tokens)]
        return graphql(PLACE, {"id": f"bench-{next(run_id)}-{number}"}, headers=headers)

    return [
        run("orders(first: 20) + bot", orders, base_url=base_url, clients=clients, seconds=seconds),
        run("bots(first: 10) nested", bots, base_url=base_url, clients=clients, seconds=seconds),
        run("placeOrder (market)", place, base_url=base_url, clients=clients, seconds=seconds),
    ]


def report(title: str, figures: list[Figures]) -> None:
    print(title)  # noqa: T201
    for figure in figures:
        print(figure.line())  # noqa: T201
    for figure in figures:
        cpu = f"  {figure.name}: load generator used {figure.client_cpu:.0%} of one core"
        print(cpu if figure.errors == 0 else f"{cpu}; first error {figure.first_error}")  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    database_url = bench_database_url(DATABASE)
    redis = os.environ.get("TG_BENCH_REDIS", "redis://127.0.0.1:6379/8")
    env = {
        "TG_DATABASE_URL": database_url,
        "TG_REDIS_URL": redis,
        "TG_LOGIN_RATE_LIMIT": "1000000/minute",
        "TG_MUTATION_RATE_LIMIT": "1000000/minute",
        "TG_PAPER_STARTING_BALANCE": "1000000000",
        "TG_MARKET_TICK_SECONDS": "0",
    }
    os.environ.update(env)
    load_settings()  # refuse a bad configuration before seeding
    seeded = asyncio.run(seed())
    rows = USERS * BOTS * ORDERS_PER_BOT
    print(  # noqa: T201
        f"trading API benchmark, one server process, PostgreSQL + Redis, {args.clients} "
        f"clients, {USERS} users x {BOTS} bots, {rows} orders"
    )
    # Every read executed (the response cache off), then as served to a polling client.
    for title, entries in (("response cache off:", "0"), ("response cache on (default):", "")):
        with server(env | {"TG_RESPONSE_CACHE_ENTRIES": entries or "10000"}, port=8767) as url:
            report(title, measure(url, seeded.emails, clients=args.clients, seconds=args.seconds))


if __name__ == "__main__":
    main()
