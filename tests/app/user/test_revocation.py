"""An open connection hears that its login session ended (`revocation.wait_until_ended`)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

from sqlalchemy.ext.asyncio import AsyncSession

from app import events, security
from app.broker import Broker, MemoryBroker, RedisBroker, Sequencer
from app.config import Settings
from app.errors import Unauthenticated
from app.outbox import relay as outbox_relay
from app.outbox import store as outbox_store
from app.user import auth, revocation
from app.user.models import User
from tests.factories import make_user

WAIT = 5.0
# Pub/sub channels are shared by every database index of a Redis server: a user id no other
# test makes keeps these channels to themselves.
LONE_USER = 987_654_321


class Asker:
    """`still_open` for one session's claims, remembering each answer it gave."""

    def __init__(self, session: AsyncSession, claims: security.AccessClaims) -> None:
        self.session = session
        self.claims = claims
        self.answers: asyncio.Queue[bool] = asyncio.Queue()

    async def __call__(self) -> bool:
        try:
            await auth.authenticate(self.session, self.claims)
            answer = True
        except Unauthenticated:
            answer = False
        self.answers.put_nowait(answer)
        return answer

    async def next_answer(self) -> bool:
        return await asyncio.wait_for(self.answers.get(), WAIT)


async def _sign_in(
    session: AsyncSession, settings: Settings, user: User
) -> tuple[auth.TokenPair, security.AccessClaims]:
    pair = await auth.login(session, settings, user_id=user.id)
    return pair, security.decode_access_token(settings, pair.access_token)


async def _committed(session: AsyncSession, broker: Broker) -> None:
    """What the unit of work does as it commits: store what was recorded, then publish it."""
    pending = events.pending(session)
    await outbox_relay.publish(broker, await outbox_store.write(session, pending))
    pending.clear()


@contextlib.asynccontextmanager
async def _watching(
    broker: Broker, user_id: int, asker: Asker, sequencer: Sequencer | None = None
) -> AsyncIterator[asyncio.Task[None]]:
    watcher = asyncio.create_task(
        revocation.wait_until_ended(broker, user_id=user_id, still_open=asker, sequencer=sequencer)
    )
    try:
        yield watcher
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def test_the_wait_ends_when_the_sessions_revocation_is_announced(
    session: AsyncSession, settings: Settings, broker: Broker
) -> None:
    user = await make_user(session)
    pair, claims = await _sign_in(session, settings, user)
    other, _ = await _sign_in(session, settings, user)
    asker = Asker(session, claims)
    async with _watching(broker, user.id, asker) as watcher:
        assert await asker.next_answer() is True  # asked once subscribed

        # Another session of the user ends: asked again, and this one is still open.
        await auth.logout(session, token=other.refresh_token)
        await _committed(session, broker)
        assert await asker.next_answer() is True
        assert not watcher.done()

        await auth.logout(session, token=pair.refresh_token)
        await _committed(session, broker)
        assert await asker.next_answer() is False
        await asyncio.wait_for(watcher, WAIT)


async def test_a_session_that_ended_before_subscribing_ends_the_wait_at_once(
    session: AsyncSession, settings: Settings, broker: Broker
) -> None:
    user = await make_user(session)
    pair, claims = await _sign_in(session, settings, user)
    await auth.logout(session, token=pair.refresh_token)  # never announced

    asker = Asker(session, claims)
    async with _watching(broker, user.id, asker) as watcher:
        await asyncio.wait_for(watcher, WAIT)
    assert asker.answers.get_nowait() is False


async def test_an_event_after_the_revocation_waits_for_the_answer(
    session: AsyncSession, settings: Settings, broker: Broker
) -> None:
    """A feed of the same connection takes its turn for a later event only once the
    connection knows whether its session ended."""
    user = await make_user(session)
    pair, claims = await _sign_in(session, settings, user)
    sequencer = Sequencer()
    asker = Asker(session, claims)
    orders = events.user_channel(user.id, f"orders-{uuid.uuid4().hex}")  # this test's alone
    async with broker.subscribe(orders) as feed, _watching(broker, user.id, asker, sequencer):
        feed.sequencer = sequencer
        assert await asker.next_answer() is True

        await auth.logout(session, token=pair.refresh_token)
        await _committed(session, broker)
        await broker.publish(orders, "filled after the logout")

        message = await asyncio.wait_for(feed.get(), WAIT)
        await asyncio.wait_for(sequencer.turn(message.seq), WAIT)
        assert asker.answers.get_nowait() is False  # answered before the feed's turn
        sequencer.done(message.seq)


async def test_a_failing_question_is_asked_again() -> None:
    broker = MemoryBroker()
    answers: Iterator[RuntimeError | bool] = iter([RuntimeError("the database is down"), False])

    async def still_open() -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    try:
        await asyncio.wait_for(
            revocation.wait_until_ended(broker, user_id=LONE_USER, still_open=still_open),
            revocation.RETRY_SECONDS + WAIT,
        )
    finally:
        await broker.aclose()
    assert next(answers, None) is None  # both answers were asked for


async def test_announcements_lost_on_the_way_mean_subscribing_afresh(redis_url: str) -> None:
    broker = RedisBroker(redis_url)
    asks: asyncio.Queue[None] = asyncio.Queue()

    async def still_open() -> bool:
        asks.put_nowait(None)
        return True

    channel = revocation.channel(LONE_USER)
    watcher = asyncio.create_task(
        revocation.wait_until_ended(broker, user_id=LONE_USER, still_open=still_open)
    )
    try:
        await asyncio.wait_for(asks.get(), WAIT)
        # Announcement 1 was published while this process was not listening: the number of
        # the next one reveals the gap.
        await broker.publish(channel, "after the gap", number=2)
        await asyncio.wait_for(asks.get(), WAIT)
        # Subscribed afresh, so later announcements are heard again.
        await broker.publish(channel, "later", number=3)
        await asyncio.wait_for(asks.get(), WAIT)
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await broker.aclose()
