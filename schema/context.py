"""The per-request (or per-WebSocket-connection) context every resolver receives."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.types import Info as StrawberryInfo

from app import events, security
from app.config import Settings
from app.errors import DomainError, Unauthenticated
from app.jobs import JobQueue
from app.ratelimit import RateLimiter
from app.runtime import Runtime
from app.user import auth
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
        if self.long_lived:
            return Loaders(self.runtime.read_session_factory)
        if self._loaders is None:
            self._loaders = Loaders(self.runtime.read_session_factory)
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
        """A session for reading; nothing it does is committed."""
        async with self.runtime.read_session_factory() as session:
            yield session

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


Info = StrawberryInfo[Context, None]


def bearer_token(value: object) -> str | None:
    """The token of an `Authorization: Bearer ...` value, if that is what it is."""
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
