"""The per-request (or per-WebSocket-connection) context every resolver receives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
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
from schema.loaders import Loaders


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
    # it would serve stale rows to later events, so such contexts hand out fresh loaders.
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
    # An HTTP request's reads share one session (one pooled connection), one use at a time.
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
        """This request's loaders; on a WebSocket, new ones each time (take them once per event)."""
        symbols = self.runtime.symbols
        if self.long_lived:
            return Loaders(self.read, symbols=symbols)
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

        Over HTTP every read of the request (the sign-in, the root fields, each DataLoader
        batch) takes turns on one session: one pooled connection instead of one per read. A
        WebSocket connection lives too long to hold one, so its reads, in turns too, each get
        their own.
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
                # What was read stays as read (detached), and the next read fetches afresh.
                session.expunge_all()
                if not _autocommit(session):
                    # A transaction would pin its snapshot (SQLite): a later read of this
                    # request must see what a mutation of the same request committed.
                    await session.rollback()

    async def aclose(self) -> None:
        """Give back the request's read session (the view calls this when the answer is out)."""
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


def _autocommit(session: AsyncSession) -> bool:
    bind = session.bind
    if not isinstance(bind, AsyncEngine):
        return False  # a session on a given connection (tests) runs in that one's transaction
    return bind.get_execution_options().get("isolation_level") == "AUTOCOMMIT"


Info = StrawberryInfo[Context, None]


def bearer_token(value: object) -> str | None:
    """The token of an `Authorization: Bearer ...` value, if that is what it is."""
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
