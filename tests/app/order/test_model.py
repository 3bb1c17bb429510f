"""The paper exchange against its reference model (model.py), step by step.

Hypothesis drives one trader on one symbol through random sequences of orders of every type,
side and time in force, cancels (of open and of closed orders), cancel-all, closing the
position, resets, new prices with and without limited liquidity, and new candle volumes (the
depth IOC and FOK orders see). Each step runs in a transaction of its own, committed as the
unit of work commits it (a kept rejection too, anything else rolled back), and the model
predicts its outcome. After every step the database, read back, must agree with the model to
the last digit, and with itself: free cash never negative, the reserve the sum of the open
orders' reserves, each order's filled quantity and fees the sums of its trades.

The state machine is synchronous and the services are async: the test runs it with an event
loop and an engine of its own, and each example on a connection whose transaction is rolled
back at its end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import hypothesis.strategies as st
from hypothesis import HealthCheck
from hypothesis import settings as run_with
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    AsyncTransaction,
    async_sessionmaker,
)

from app.config import Settings
from app.db import make_engine
from app.errors import DomainError
from app.market import service as market_service
from app.market.bars import Bar
from app.market.models import Candle, Symbol, Timeframe
from app.order import service as order_service
from app.order.accounting import Side
from app.order.models import Account, Order, OrderStatus, OrderType, Position, TimeInForce, Trade
from app.order.placing import OrderRejected
from app.user.models import Role, User
from tests.app.order.model import OK, Book, ModelOrder, Request, Terms
from tests.factories import make_symbol

T = TypeVar("T")
Action = Callable[[AsyncSession], Awaitable[int | None]]

START_PRICE = Decimal(100)
LOWEST_PRICE = Decimal(1)
CANDLE_TIME = datetime(2024, 1, 1, tzinfo=UTC)

# About 15 s a database here. CI replays the same sequences every run.
RUN = run_with(
    max_examples=30,
    stateful_step_count=30,
    deadline=None,
    derandomize=os.environ.get("CI", "").lower() == "true",
    suppress_health_check=[HealthCheck.too_slow],
)

SIDES = st.sampled_from(Side)
TIME_IN_FORCE = st.sampled_from(TimeInForce)
# Quantity steps (0.001) over three scales: under the 10 USD minimum, everyday, and past the cash.
STEPS = st.one_of(st.integers(1, 200), st.integers(200, 5_000), st.integers(5_000, 120_000))
# A price as ticks (0.01) from the last price: within the slippage, around it, or a gap.
TICKS = st.one_of(st.integers(-10, 10), st.integers(-300, 300))
# Small moves, large ones both ways, and upward gaps (10% to 50%) past the stops.
MOVES = st.one_of(st.integers(-300, 300), st.integers(-3_000, 3_000), st.integers(1_000, 5_000))
LIQUIDITY = st.one_of(st.none(), STEPS)
MALFORMED = st.sampled_from(["quantity off the step", "price off the tick", "no limit price"])


@dataclass(frozen=True)
class Attempt:
    """How a step ended: OK or the domain error's code, its field, and the order it stored."""

    code: str
    field: str | None = None
    order_id: int | None = None


class Venue:
    """One example's database: a connection whose transaction is rolled back at the end, and a
    session on it per step."""

    def __init__(self, runner: asyncio.Runner, engine: AsyncEngine) -> None:
        self.runner = runner
        self.connection: AsyncConnection = runner.run(engine.connect().start())
        self.transaction: AsyncTransaction = runner.run(self.connection.begin().start())
        self.sessions = async_sessionmaker(
            bind=self.connection,
            expire_on_commit=False,
            autoflush=False,
            join_transaction_mode="create_savepoint",
        )

    def attempt(self, action: Action) -> Attempt:
        return self.runner.run(self._attempt(action))

    async def _attempt(self, action: Action) -> Attempt:
        async with self.sessions() as session:
            try:
                order_id = await action(session)
            except DomainError as exc:
                # As the unit of work: a kept rejection commits, anything else changes nothing.
                await (session.commit() if exc.keep_changes else session.rollback())
                kept = exc.order_id if isinstance(exc, OrderRejected) else None
                return Attempt(exc.code, exc.field, kept)
            await session.commit()
            return Attempt(OK, None, order_id)

    def read(self, query: Callable[[AsyncSession], Awaitable[T]]) -> T:
        async def run() -> T:
            async with self.sessions() as session:
                return await query(session)

        return self.runner.run(run())

    def close(self) -> None:
        async def run() -> None:
            await self.transaction.rollback()
            await self.connection.close()

        self.runner.run(run())


@dataclass(frozen=True)
class OrderView:
    status: OrderStatus
    filled: Decimal
    average_price: Decimal | None
    fees: Decimal
    reserved: Decimal
    triggered: bool


@dataclass(frozen=True)
class Books:
    """What the model and the database must agree on."""

    balance: Decimal
    reserved: Decimal
    orders: dict[int, OrderView]
    position: tuple[Decimal, Decimal, Decimal]
    """Quantity, average entry, realised PnL after fees."""
    equity: Decimal
    unrealized_pnl: Decimal
    realized_pnl: Decimal
    pnl_today: Decimal


def model_books(book: Book) -> Books:
    def view(order: ModelOrder) -> OrderView:
        return OrderView(
            order.status,
            order.filled,
            order.average_price,
            order.fees,
            order.reserved,
            order.triggered,
        )

    position = book.position
    return Books(
        balance=book.cash,
        reserved=book.reserved,
        orders={id: view(order) for id, order in book.orders.items()},
        position=(position.quantity, position.average, position.realized),
        equity=book.equity,
        unrealized_pnl=book.unrealized,
        realized_pnl=position.realized,
        pnl_today=book.pnl_today,
    )


@dataclass(frozen=True)
class Stored:
    """The owner's rows, read back from the database."""

    account: Account | None
    orders: list[Order]
    trades: list[Trade]
    position: Position | None
    portfolio: Any

    def books(self, starting: Decimal) -> Books:
        account, position, portfolio = self.account, self.position, self.portfolio
        orders = {
            order.id: OrderView(
                order.status,
                order.filled_quantity,
                order.average_fill_price,
                order.fees,
                order.reserved,
                order.triggered,
            )
            for order in self.orders
        }
        return Books(
            balance=starting if account is None else account.balance,
            reserved=Decimal(0) if account is None else account.reserved,
            orders=orders,
            position=(
                (Decimal(0), Decimal(0), Decimal(0))
                if position is None
                else (position.quantity, position.average_price, position.realized_pnl)
            ),
            equity=portfolio.equity,
            unrealized_pnl=portfolio.unrealized_pnl,
            realized_pnl=portfolio.realized_pnl,
            pnl_today=portfolio.pnl_today,
        )

    def check_consistency(self) -> None:
        """The rules the books keep whatever the model says."""
        if self.account is not None:
            assert self.account.available >= 0
            open_reserves = sum((o.reserved for o in self.orders if o.status.is_open), Decimal(0))
            assert self.account.reserved == open_reserves
            assert (self.portfolio.balance, self.portfolio.reserved) == (
                self.account.balance,
                self.account.reserved,
            )
        for order in self.orders:
            trades = [t for t in self.trades if t.order_id == order.id]
            assert order.filled_quantity == sum((t.quantity for t in trades), Decimal(0))
            assert order.fees == sum((t.fee for t in trades), Decimal(0))
            assert (order.status is OrderStatus.FILLED) == (order.filled_quantity == order.quantity)
            if not order.status.is_open:
                assert order.reserved == 0


async def read_stored(
    session: AsyncSession, settings: Settings, *, owner_id: int, symbol_id: int
) -> Stored:
    account = await session.scalar(select(Account).where(Account.owner_id == owner_id))
    orders = await session.scalars(select(Order).where(Order.owner_id == owner_id))
    trades = await session.scalars(select(Trade).where(Trade.owner_id == owner_id))
    position = await session.scalar(
        select(Position).where(Position.owner_id == owner_id, Position.symbol_id == symbol_id)
    )
    portfolio = await order_service.portfolio(session, settings, owner_id=owner_id)
    return Stored(account, list(orders.all()), list(trades.all()), position, portfolio)


async def open_market(session: AsyncSession) -> tuple[int, Symbol]:
    """A trader (straight to the table: registering would hash a password every example) and a
    fresh symbol at the starting price."""
    user = User(
        email=f"model-{uuid.uuid4().hex[:12]}@example.com",
        password_hash="-",
        display_name="Model",
        role=Role.USER,
    )
    session.add(user)
    symbol = await make_symbol(session)
    await market_service.set_price(
        session, symbol_id=symbol.id, price=START_PRICE, at=datetime.now(UTC)
    )
    return user.id, symbol


class PaperExchange(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self, runner: asyncio.Runner, engine: AsyncEngine, settings: Settings) -> None:
        super().__init__()
        self.settings = settings
        self.venue = Venue(runner, engine)
        self.owner_id, symbol = self.venue.read(self._committed(open_market))
        self.symbol_id, self.symbol = symbol.id, symbol.name
        terms = Terms(
            tick=symbol.price_tick,
            step=symbol.quantity_step,
            min_notional=symbol.min_notional,
            slippage_bps=settings.paper_slippage_bps,
            fee_rate=settings.paper_fee_rate,
        )
        self.book = Book(terms, settings.paper_starting_balance, START_PRICE)

    @staticmethod
    def _committed(
        action: Callable[[AsyncSession], Awaitable[T]],
    ) -> Callable[[AsyncSession], Awaitable[T]]:
        async def run(session: AsyncSession) -> T:
            result = await action(session)
            await session.commit()
            return result

        return run

    def teardown(self) -> None:
        self.venue.close()

    # Orders ---------------------------------------------------------------------------------

    def _price(self, ticks: int) -> Decimal:
        return self.book.last + ticks * self.book.terms.tick

    def _place(self, request: Request) -> Any:
        async def place(session: AsyncSession) -> int:
            order = await order_service.place_order(
                session,
                self.settings,
                owner_id=self.owner_id,
                symbol=self.symbol,
                side=request.side,
                type=request.type,
                quantity=request.quantity,
                price=request.price,
                stop_price=request.stop_price,
                time_in_force=request.time_in_force,
            )
            return order.id

        expected = self.book.placement(request)
        attempt = self.venue.attempt(place)
        assert (attempt.code, attempt.field) == expected
        if attempt.order_id is None:
            return multiple()
        self.book.place(attempt.order_id, request)
        return attempt.order_id

    def _quantity(self, steps: int) -> Decimal:
        return steps * self.book.terms.step

    @rule(target=orders, side=SIDES, tif=TIME_IN_FORCE, steps=STEPS)
    def market(self, side: Side, tif: TimeInForce, steps: int) -> Any:
        return self._place(Request(side, OrderType.MARKET, tif, self._quantity(steps)))

    @rule(target=orders, side=SIDES, tif=TIME_IN_FORCE, steps=STEPS, limit=TICKS)
    def limit(self, side: Side, tif: TimeInForce, steps: int, limit: int) -> Any:
        price = self._price(limit)
        return self._place(Request(side, OrderType.LIMIT, tif, self._quantity(steps), price))

    @rule(target=orders, side=SIDES, tif=TIME_IN_FORCE, steps=STEPS, stop=TICKS)
    def stop(self, side: Side, tif: TimeInForce, steps: int, stop: int) -> Any:
        request = Request(
            side, OrderType.STOP, tif, self._quantity(steps), stop_price=self._price(stop)
        )
        return self._place(request)

    @rule(target=orders, tif=TIME_IN_FORCE, stop=TICKS, spare=st.integers(0, 100))
    def stop_with_all_cash(self, tif: TimeInForce, stop: int, spare: int) -> Any:
        """A stop buy for (nearly) all the free cash: the one a gap past its stop leaves short."""
        terms = self.book.terms
        stop_price = max(self._price(stop), terms.tick)
        worst = terms.market(Side.BUY, max(self.book.last, stop_price))
        steps = int(self.book.available / (worst * (1 + terms.fee_rate)) / terms.step) - spare
        if steps <= 0:
            return multiple()
        request = Request(
            Side.BUY, OrderType.STOP, tif, self._quantity(steps), stop_price=stop_price
        )
        return self._place(request)

    @rule(target=orders, side=SIDES, tif=TIME_IN_FORCE, steps=STEPS, limit=TICKS, stop=TICKS)
    def stop_limit(self, side: Side, tif: TimeInForce, steps: int, limit: int, stop: int) -> Any:
        request = Request(
            side,
            OrderType.STOP_LIMIT,
            tif,
            self._quantity(steps),
            self._price(limit),
            self._price(stop),
        )
        return self._place(request)

    @rule(target=orders, side=SIDES, steps=STEPS, fault=MALFORMED)
    def malformed(self, side: Side, steps: int, fault: str) -> Any:
        """Invalid input is refused with its field and changes nothing."""
        quantity, price = self._quantity(steps), self.book.last
        limit: Decimal | None = price
        if fault == "quantity off the step":
            quantity += self.book.terms.step / 2
        elif fault == "price off the tick":
            limit = price + self.book.terms.tick / 2
        else:
            limit = None
        return self._place(Request(side, OrderType.LIMIT, TimeInForce.GTC, quantity, limit))

    @rule(order=orders)
    def cancel(self, order: int) -> None:
        async def cancel(session: AsyncSession) -> None:
            await order_service.cancel_order(
                session, self.settings, owner_id=self.owner_id, order_id=order
            )

        assert self.venue.attempt(cancel).code == self.book.cancel(order)

    @rule()
    def cancel_all(self) -> None:
        async def cancel_all(session: AsyncSession) -> None:
            await order_service.cancel_all_orders(session, self.settings, owner_id=self.owner_id)

        assert self.venue.attempt(cancel_all).code == OK
        self.book.cancel_all()

    @rule(target=orders)
    def close_position(self) -> Any:
        async def close(session: AsyncSession) -> int:
            order = await order_service.close_position(
                session, self.settings, owner_id=self.owner_id, symbol=self.symbol
            )
            return order.id

        attempt = self.venue.attempt(close)
        assert attempt.code == self.book.closing()
        if attempt.code != OK:
            return multiple()
        assert attempt.order_id is not None
        self.book.close_position(attempt.order_id)
        return attempt.order_id

    @rule()
    def reset(self) -> None:
        async def reset(session: AsyncSession) -> None:
            await order_service.reset_account(session, self.settings, owner_id=self.owner_id)

        assert self.venue.attempt(reset).code == OK
        self.book.reset()

    # The market -----------------------------------------------------------------------------

    @rule(ticks=MOVES, liquidity=LIQUIDITY)
    def move(self, ticks: int, liquidity: int | None) -> None:
        """A new last price, matched against the resting orders with the liquidity given."""
        price = max(self._price(ticks), LOWEST_PRICE)
        offered = None if liquidity is None else self._quantity(liquidity)

        async def tick(session: AsyncSession) -> None:
            now = datetime.now(UTC)
            await market_service.set_price(session, symbol_id=self.symbol_id, price=price, at=now)
            await order_service.match_orders(
                session, self.settings, symbol_id=self.symbol_id, price=price, liquidity=offered
            )

        assert self.venue.attempt(tick).code == OK
        self.book.match(price, offered)

    @rule(volume=st.one_of(st.none(), st.integers(0, 20_000)))
    def candle(self, volume: int | None) -> None:
        """The newest 1m candle's volume (what IOC and FOK orders may take), or no candle."""
        depth = None if volume is None else self._quantity(volume)
        last = self.book.last

        async def write(session: AsyncSession) -> None:
            where = (Candle.symbol_id == self.symbol_id, Candle.timeframe == Timeframe.M1)
            await session.execute(delete(Candle).where(*where))
            if depth is not None:
                bar = Bar(CANDLE_TIME, last, last, last, last, depth)
                await market_service.upsert_candles(
                    session, symbol_id=self.symbol_id, timeframe=Timeframe.M1, rows=[bar]
                )

        assert self.venue.attempt(write).code == OK
        self.book.depth = depth

    # The books ------------------------------------------------------------------------------

    @invariant()
    def books_agree(self) -> None:
        async def read(session: AsyncSession) -> Stored:
            return await read_stored(
                session, self.settings, owner_id=self.owner_id, symbol_id=self.symbol_id
            )

        stored = self.venue.read(read)
        stored.check_consistency()
        assert stored.books(self.settings.paper_starting_balance) == model_books(self.book)


def test_the_books_follow_the_model(database_url: str, settings: Settings) -> None:
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        engine = make_engine(database_url, pool_size=1)
        try:

            class OnThisDatabase(PaperExchange):
                def __init__(self) -> None:
                    super().__init__(runner, engine, settings)

            run_state_machine_as_test(OnThisDatabase, settings=RUN)
        finally:
            runner.run(engine.dispose())
