"""Sign-in limits through the real schema: guesses sent at once, the per-email ceiling that slows
strangers but not the owner, and a limiter whose Redis is away."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from strawberry.types import ExecutionResult

from app.broker import MemoryBroker
from app.config import Settings
from app.db import make_engine, make_session_factory
from app.ratelimit import make_rate_limiter
from app.runtime import Runtime
from app.user.login_limits import address_key
from bench.private import free_port
from resolvers.root import TradeGraphSchema
from schema.context import Context
from tests.conftest import REDIS_URL, Execute, flush_redis, test_settings
from tests.factories import PASSWORD, error_codes, make_user
from tests.resolvers.test_user import LOGIN

GUESSES = 30
LIMIT = 10


@pytest.fixture
def settings() -> Settings:
    return test_settings(
        login_rate_limit=f"{LIMIT}/minute",
        login_address_rate_limit="1000/minute",
        login_email_rate_limit="5/hour",
        login_email_throttle="1/hour",
    )


@pytest.fixture
async def committing_engine(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """PostgreSQL with real transactions and a pool: requests that run at once, as in the
    server (the rolled-back test session is one connection, which they could not share)."""
    engine = make_engine(postgres_url, pool_size=LIMIT)
    yield engine
    await engine.dispose()


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def concurrent_runtime(
    storage: str, settings: Settings, committing_engine: AsyncEngine
) -> AsyncIterator[Runtime]:
    url = None if storage == "memory" else REDIS_URL
    if url is not None:
        await flush_redis(url)
    runtime = Runtime(
        # The per (email, address) limit alone: the email's ceiling set out of reach.
        settings=settings.model_copy(update={"login_email_rate_limit": "1000/hour"}),
        engine=committing_engine,
        session_factory=make_session_factory(committing_engine),
        read_session_factory=make_session_factory(committing_engine, read_only=True),
        broker=MemoryBroker(),
        # Counting is what is tested, not timeouts: a busy machine must not make the limiter
        # fall back to counting in process (which it does after a Redis call times out).
        limiter=make_rate_limiter(url, timeout=10.0),
    )
    yield runtime
    await runtime.broker.aclose()
    await runtime.limiter.aclose()


async def _login(
    schema: TradeGraphSchema, runtime: Runtime, email: str, password: str, address: str
) -> ExecutionResult:
    context = Context(runtime=runtime, request_id="t", client_address=address)
    try:
        return await schema.execute(
            LOGIN, {"email": email, "password": password}, context_value=context
        )
    finally:
        await context.aclose()


def retry_after(result: ExecutionResult) -> int:
    assert result.errors is not None
    extensions = result.errors[0].extensions
    assert extensions is not None
    seconds: int = extensions["retryAfter"]
    return seconds


async def test_guesses_sent_at_once_are_refused_past_the_limit(
    schema: TradeGraphSchema, concurrent_runtime: Runtime, storage: str
) -> None:
    async with concurrent_runtime.session_factory() as session:
        user = await make_user(session, email=f"guess-{uuid.uuid4().hex[:8]}@example.com")
        await session.commit()
    # The right password comes last, well past the limit, within the same burst.
    passwords = [f"guess number {n}" for n in range(GUESSES - 1)] + [PASSWORD]
    results = await asyncio.gather(
        *(
            _login(schema, concurrent_runtime, user.email, password, "203.0.113.7")
            for password in passwords
        )
    )

    codes = [error_codes(result) for result in results]
    assert codes.count(["RATE_LIMITED"]) == GUESSES - LIMIT, codes
    # Checked at most `LIMIT` passwords: every other answer is a refusal without a check.
    assert codes.count(["UNAUTHENTICATED"]) + codes.count([]) == LIMIT, codes
    for result in results:
        if error_codes(result) == ["RATE_LIMITED"]:
            assert 1 <= retry_after(result) <= 60
    if storage == "memory":
        # In process the attempts are counted in the order they were sent, so the right
        # password, the last, is refused; Redis may take them in another order.
        assert codes[-1] == ["RATE_LIMITED"]
        assert all(result.data is None for result in results)


async def test_the_per_email_ceiling_slows_strangers_but_not_the_owner(
    gql: Execute, session: AsyncSession
) -> None:
    owner = await make_user(session)
    home, travelling = "198.51.100.10", "198.51.100.99"

    async def login(password: str, address: str) -> list[str]:
        return error_codes(
            await gql(LOGIN, {"email": owner.email, "password": password}, address=address)
        )

    assert await login(PASSWORD, home) == []
    # Guesses from many addresses, each under its own limits: 4 more reach the ceiling (5 an
    # hour), one more takes the strangers' slow lane (1 an hour), and the rest wait for it.
    strangers = [await login("not the password", f"192.0.2.{n}") for n in range(1, 11)]
    assert strangers == [["UNAUTHENTICATED"]] * 5 + [["RATE_LIMITED"]] * 5

    # The owner, at the address they sign in from, is not held up at all...
    assert await login(PASSWORD, home) == []
    # ...and from a new one waits for the lane like anyone else (a delay, not a lock).
    delayed = await gql(LOGIN, {"email": owner.email, "password": PASSWORD}, address=travelling)
    assert error_codes(delayed) == ["RATE_LIMITED"]
    assert 1 <= retry_after(delayed) <= 3600


async def test_a_success_clears_the_count_of_its_email_and_address_alone(
    session: AsyncSession, runtime: Runtime, schema: TradeGraphSchema
) -> None:
    user = await make_user(session)
    limits = {"login_rate_limit": "3/minute", "login_address_rate_limit": "6/minute"}
    limited = replace(runtime, settings=runtime.settings.model_copy(update=limits))
    passwords = ["wrong 1", "wrong 2", PASSWORD, "wrong 3", "wrong 4", "wrong 5", PASSWORD]
    answers = [
        error_codes(await _login(schema, limited, user.email, password, "198.51.100.20"))
        for password in passwords
    ]
    # The success let three more guesses at this email from here; the address counted all six.
    wrong = ["UNAUTHENTICATED"]
    assert answers == [wrong, wrong, [], wrong, wrong, wrong, ["RATE_LIMITED"]]


async def test_logins_and_mutations_are_answered_while_redis_is_away(
    schema: TradeGraphSchema, runtime: Runtime, session: AsyncSession
) -> None:
    user = await make_user(session)
    # Nothing listens there: a Redis that went away. Limits then hold in this process.
    away = make_rate_limiter(f"redis://127.0.0.1:{free_port()}/0", timeout=0.3)
    cut_off = replace(runtime, limiter=away)
    try:
        here = "198.51.100.30"
        answers = [
            error_codes(await _login(schema, cut_off, user.email, password, here))
            for password in ("wrong", PASSWORD)
        ]
        assert answers == [["UNAUTHENTICATED"], []]
        context = Context(runtime=cut_off, request_id="t", client_address=here, user=user)
        update = 'mutation { updateProfile(input: {displayName: "Still here"}) { displayName } }'
        result = await schema.execute(update, context_value=context)
        assert result.data == {"updateProfile": {"displayName": "Still here"}}
        assert away.degraded
    finally:
        await away.aclose()


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("unknown", "unknown"),
    ],
)
def test_an_ipv6_client_is_counted_by_its_64(address: str, key: str) -> None:
    assert address_key(address) == key
