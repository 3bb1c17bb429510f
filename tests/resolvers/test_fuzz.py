"""Every query and mutation of the schema, generated, run by a signed-in user: never a 500.

hypothesis-graphql writes documents from the schema's SDL; Decimal, DateTime and JSON values
are drawn from strategies that mix valid-looking values with garbage (text, floats, values past
what the database stores). Half the time the ids and symbols in a document are pointed at rows
that exist, so the services behind the validation run too. Every answer must be data or an
error with a code a client can act on: INTERNAL_SERVER_ERROR fails the test with the document.

Bounded for CI: a fixed number of examples, derandomised (the same documents every run), no
deadline per example, no shrinking.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import hypothesis.strategies as st
import pytest
from graphql import (
    ArgumentNode,
    DocumentNode,
    NameNode,
    ObjectFieldNode,
    StringValueNode,
    ValueNode,
    Visitor,
    print_ast,
    visit,
)
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as run_with
from hypothesis_graphql import from_schema, nodes
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app import security
from app.broker import Broker, MemoryBroker
from app.config import Settings
from app.ratelimit import make_rate_limiter
from app.runtime import Runtime
from app.strategy import kinds
from app.user.models import Role, User
from resolvers.root import TradeGraphSchema
from schema.context import Context
from tests.factories import PASSWORD, make_bot, make_symbol, place, set_price

# About 15 s a database here; shrinking is off so that a failure, too, ends in bounded time
# (the failing document is printed whole).
EXAMPLES = 200

_decimal_text = st.decimals(
    min_value=Decimal("-1e20"), max_value=Decimal("1e20"), allow_nan=False, places=None
).map(lambda value: format(value, "f"))
_edge_text = st.sampled_from(
    [
        "0",
        "0.01",
        "1",
        "100",
        "60000",
        "999999999999999999",
        "999999999999999999.999999999999999999",
        "0.000000000000000001",
        "1E+18",
        "1E+20",
        "-1",
        "NaN",
        "Infinity",
        "",
        " 1",
        "1e-30",
    ]
)
DECIMALS = st.one_of(
    _decimal_text.map(nodes.String),
    _edge_text.map(nodes.String),
    st.text(max_size=20).map(nodes.String),
    st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
    st.integers(min_value=-(10**25), max_value=10**25).map(nodes.Int),
)
_start = datetime(2024, 1, 1, tzinfo=UTC)
DATETIMES = st.one_of(
    st.integers(min_value=-(10**6), max_value=10**6).map(
        lambda minutes: nodes.String((_start + timedelta(minutes=minutes)).isoformat())
    ),
    st.datetimes().map(lambda moment: nodes.String(moment.isoformat())),
    st.text(max_size=30).map(nodes.String),
)
_names = sorted({spec.name for kind in kinds.Kind for spec in kinds.parameter_specs(kind)})
_json_value: st.SearchStrategy[ValueNode] = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(nodes.Int),
    st.floats(allow_nan=False, allow_infinity=False).map(nodes.Float),
    _decimal_text.map(nodes.String),
    st.text(max_size=10).map(nodes.String),
    st.booleans().map(nodes.Boolean),
)


def _object(fields: dict[str, ValueNode]) -> ValueNode:
    return nodes.Object(
        [ObjectFieldNode(name=NameNode(value=name), value=value) for name, value in fields.items()]
    )


def _list(values: list[ValueNode]) -> ValueNode:
    return nodes.List(values)


JSONS = st.one_of(
    st.dictionaries(st.sampled_from([*_names, "x"]), _json_value, max_size=4).map(_object),
    _json_value,
    st.lists(_json_value, max_size=3).map(_list),
)


@dataclass
class Aim:
    """Rows that exist, by the names of the arguments and input fields that point at them."""

    values: dict[str, str]


class _Aimer(Visitor):
    def __init__(self, aim: Aim) -> None:
        super().__init__()
        self.aim = aim

    def enter_argument(self, node: ArgumentNode, *_: object) -> ArgumentNode | None:
        value = self._value(node.name.value, node.value)
        return None if value is None else ArgumentNode(name=node.name, value=value)

    def enter_object_field(self, node: ObjectFieldNode, *_: object) -> ObjectFieldNode | None:
        value = self._value(node.name.value, node.value)
        return None if value is None else ObjectFieldNode(name=node.name, value=value)

    def _value(self, name: str, value: ValueNode) -> StringValueNode | None:
        text = self.aim.values.get(name)
        if text is None or not isinstance(value, StringValueNode):
            return None
        return StringValueNode(value=text)


def aimed(document: DocumentNode, aim: Aim | None) -> str:
    return print_ast(document if aim is None else visit(document, _Aimer(aim)))


@dataclass
class World:
    user: User
    admin: User
    aim: Aim


@functools.cache
def _password_hash() -> str:
    return security.hash_password(PASSWORD)


async def _user(session: AsyncSession, role: Role) -> User:
    # Straight to the table: registering would hash a password (Argon2) for every example.
    number = uuid.uuid4().hex[:12]
    user = User(
        email=f"fuzz-{number}@example.com",
        password_hash=_password_hash(),
        display_name=f"Fuzz {number}",
        role=role,
    )
    session.add(user)
    await session.flush()
    return user


async def _world(session: AsyncSession, settings: Settings) -> World:
    user = await _user(session, Role.USER)
    admin = await _user(session, Role.ADMIN)
    symbol = await make_symbol(session)
    await set_price(session, symbol=symbol, price="60000")
    bot = await make_bot(session, owner=user, symbol=symbol)
    order = await place(session, settings, user, symbol=symbol.name, quantity=Decimal("0.01"))
    values = {
        "symbol": symbol.name,
        "id": str(bot.id),
        "botId": str(bot.id),
        "strategyId": str(bot.strategy_id),
        "orderId": str(order.id),
    }
    return World(user, admin, Aim(values))


@contextlib.asynccontextmanager
async def _isolated(
    engine: AsyncEngine, settings: Settings, broker: Broker
) -> AsyncIterator[tuple[Runtime, World]]:
    """A runtime on a transaction of its own, rolled back after the example.

    Examples do not share a connection: in tests every session of a request shares one
    (savepoints on the test's connection), where an error in one root field can leave a
    savepoint the next example would trip over; the server has a connection per session.
    """
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            factory = async_sessionmaker(
                bind=connection,
                expire_on_commit=False,
                autoflush=False,
                join_transaction_mode="create_savepoint",
            )
            runtime = Runtime(
                settings=settings,
                engine=engine,
                session_factory=factory,
                read_session_factory=factory,
                broker=broker,
                limiter=make_rate_limiter(None),
            )
            async with factory() as session:
                world = await _world(session, settings)
                await session.commit()
            yield runtime, world
        finally:
            await transaction.rollback()


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    instance = MemoryBroker()
    yield instance
    await instance.aclose()


def _operations(schema: TradeGraphSchema) -> st.SearchStrategy[DocumentNode]:
    return from_schema(
        str(schema),
        custom_scalars={"Decimal": DECIMALS, "DateTime": DATETIMES, "JSON": JSONS},
        print_ast=lambda document: document,
        allow_x00=False,
    )


@run_with(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(data=st.data())
async def test_no_generated_operation_is_an_internal_error(
    data: st.DataObject,
    schema: TradeGraphSchema,
    engine: AsyncEngine,
    settings: Settings,
    broker: Broker,
) -> None:
    document = data.draw(_operations(schema), label="document")
    aim = data.draw(st.booleans(), label="aimed")
    admin = data.draw(st.booleans(), label="admin")
    async with _isolated(engine, settings, broker) as (runtime, world):
        query = aimed(document, world.aim if aim else None)
        user = world.admin if admin else world.user
        context = Context(runtime=runtime, request_id="fuzz", client_address="127.0.0.1", user=user)
        try:
            result = await schema.execute(query, context_value=context)
        finally:
            await context.aclose()
    internal = [
        error
        for error in result.errors or ()
        if (error.extensions or {}).get("code") == "INTERNAL_SERVER_ERROR"
    ]
    assert not internal, f"{query}\n-> {result.errors}"
