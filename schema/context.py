"""The per-request (or per-WebSocket-connection) context every resolver receives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info as StrawberryInfo

from app import events, security
from app.broker import Sequencer
from app.config import Settings
from app.errors import DomainError, Unauthenticated
from app.jobs import JobQueue
from app.ratelimit import RateLimiter
from app.runtime import Runtime
from app.user import auth, revocation
from app.user.models import User
from schema.event_reads import EventLoaders
from schema.loaders import Loaders
from schema.sockets import Slot


@dataclass
class Context:
    runtime: Runtime
    request_id: str
    client_address: str
    user: User | None = None
    claims: security.AccessClaims | None = None
    # A token was sent but is not valid: fields that need a user report this, not "missing".
    auth_error: DomainError | None = None
    connection_params: dict[str, Any] | None = None
    # A WebSocket connection keeps one context for all its operations; a DataLoader cached on
    # it would serve stale rows to later events, so such contexts hand out loaders per event.
    long_lived: bool = False
    _loaders: Loaders | None = field(default=None, repr=False)
    # Set when the answer may be kept by the response cache: the operation's metrics label.
    cacheable_as: str | None = None
    # A WebSocket connection's subscriptions deliver in the order events arrived (feeds.follow).
    sequencer: Sequencer = field(default_factory=Sequencer, repr=False)
    # On a WebSocket: closes the connection with a code and a reason (set by the view).
    close_connection: Callable[[int, str], Awaitable[None]] | None = field(default=None, repr=False)
    # On a WebSocket: the timer that closes it when the access token expires.
    expiry: asyncio.Task[None] | None = field(default=None, repr=False)
    # On a WebSocket: its place in the process's counts of open connections (the view's).
    socket_slot: Slot | None = field(default=None, repr=False)
    # On a WebSocket: the loaders of each event its subscriptions handle (not copied by
    # dataclasses.replace: a shared execution's context reads for itself).
    _event_loaders: EventLoaders = field(default_factory=EventLoaders, init=False, repr=False)
    # An HTTP request's reads share one session, one read at a time, each read holding a
    # pooled connection only while it runs.
    _session: AsyncSession | None = field(default=None, repr=False)
    _turn: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    @property
    def limiter(self) -> RateLimiter:
        return self.runtime.limiter

    @property
    def queue(self) -> JobQueue:
        assert self.runtime.queue is not None, "the composition root sets a job queue"
        return self.runtime.queue

    @property
    def loaders(self) -> Loaders:
        """This request's loaders; on a WebSocket, those of the event being handled, which the
        connection's subscriptions share (schema/event_reads.py), else new ones each time."""
        symbols = self.runtime.symbols
        if self.long_lived:
            return self._event_loaders.current(lambda: Loaders(self.read, symbols=symbols))
        if self._loaders is None:
            self._loaders = Loaders(self.read, symbols=symbols)
        return self._loaders

    @property
    def user_id(self) -> int:
        return self.require_user().id

    def require_user(self) -> User:
        if self.user is None:
            raise self.auth_error or Unauthenticated("sign in to use this field")
        return self.user

    def unit_of_work(self) -> contextlib.AbstractAsyncContextManager[AsyncSession]:
        """A transaction that commits and then publishes its events."""
        return events.unit_of_work(self.runtime.session_factory, self.runtime.broker)

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reading; nothing it does is committed.

        Reads take turns, so a request (or a WebSocket connection) holds at most one pooled
        connection for reading, and only while a read runs: between reads, and so during a
        mutation's unit of work, it holds none. Were the sign-in's connection kept until the
        answer, a unit of work would need a second one while holding the first, and a burst of
        mutations as large as the pool would hold every connection, each waiting for another.
        Over HTTP the reads share one session; a WebSocket connection's each get their own.
        """
        if self.long_lived:
            # One read at a time here too: however many subscriptions a connection holds, it
            # takes at most one pooled connection at a time.
            async with self._turn, self.runtime.read_session_factory() as session:
                yield session
            return
        async with self._turn:
            if self._session is None:
                self._session = self.runtime.read_session_factory()
            session = self._session
            try:
                yield session
            finally:
                # Gives the connection back (ending a transaction, whose snapshot a later read
                # must not see: it must see what a mutation of the same request committed); what
                # was read stays as read (detached), and the next read fetches afresh.
                await session.close()

    async def aclose(self) -> None:
        """Close the request's read session (the view calls this when the answer is out), once
        a read still running is done: each read gives its connection back as it ends."""
        async with self._turn:
            if self._session is not None:
                session, self._session = self._session, None
                await session.close()

    async def authenticate(self, token: str | None) -> None:
        """Resolve a bearer token into the current user, or remember why it is refused."""
        self.user, self.claims, self.auth_error = None, None, None
        if not token:
            return
        try:
            claims = security.decode_access_token(self.settings, token)
            async with self.read() as session:
                self.user = await auth.authenticate(session, claims)
            self.claims = claims
        except DomainError as exc:
            self.auth_error = exc

    async def session_ended(self) -> None:
        """Return once the login session this connection signed in with has ended (see
        app/user/revocation.py); from then on its operations and feeds are refused."""
        user = self.require_user()
        await revocation.wait_until_ended(
            self.runtime.broker,
            user_id=user.id,
            still_open=self._still_signed_in,
            sequencer=self.sequencer,
        )

    async def _still_signed_in(self) -> bool:
        """Ask the database again; a refusal takes the user away, so every later operation,
        and every feed at its next event, gets UNAUTHENTICATED."""
        if self.claims is None:
            return False
        try:
            async with self.read() as session:
                self.user = await auth.authenticate(session, self.claims)
        except DomainError as exc:
            self.user, self.auth_error = None, exc
            return False
        return True


Info = StrawberryInfo[Context, None]


def bearer_token(value: object) -> str | None:
    """The token of an `Authorization: Bearer ...` value, if that is what it is."""
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
