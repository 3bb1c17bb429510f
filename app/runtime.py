"""The long-lived resources of one process, opened once and shared by requests and jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.broker import Broker, make_broker
from app.config import Settings
from app.db import make_engine, make_session_factory
from app.jobs import JobQueue
from app.market.clock import MarketClock
from app.market.service import SymbolView
from app.outbox.relay import Relay
from app.ratelimit import RateLimiter, make_rate_limiter


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    # Sessions that only read; on SQLite they do not take the write lock.
    read_session_factory: async_sessionmaker[AsyncSession]
    broker: Broker
    limiter: RateLimiter
    # Set by the composition root: ARQ in production, the in-process runner when embedded.
    queue: JobQueue | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    market_clock: MarketClock = field(default_factory=MarketClock)
    # Symbol id -> its name, tick and step, filled as symbols are read (these never change).
    symbols: dict[int, SymbolView] = field(default_factory=dict)
    # Publishes the outbox's events that no publish after commit delivered (app/outbox).
    relay: Relay | None = None

    def start(self) -> None:
        """Start the process's background work (the outbox relay), once its event loop runs.
        Starting again does nothing."""
        if self.relay is not None:
            self.relay.start()

    def job_context(self) -> dict[str, Any]:
        """What a job function finds in its `ctx`, under ARQ and in-process alike."""
        return {
            "settings": self.settings,
            "session_factory": self.session_factory,
            "broker": self.broker,
            "queue": self.queue,
            "market_clock": self.market_clock,
        }

    async def aclose(self) -> None:
        if self.queue is not None:
            await self.queue.aclose()
        if self.relay is not None:
            await self.relay.aclose()
        await self.broker.aclose()
        await self.limiter.aclose()
        await self.engine.dispose()


def open_runtime(settings: Settings) -> Runtime:
    engine = make_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        pool_timeout=settings.database_pool_timeout,
    )
    session_factory = make_session_factory(engine)
    broker = make_broker(settings.redis_url, timeout=settings.redis_timeout)
    relay = Relay(
        session_factory,
        broker,
        interval=settings.outbox_relay_seconds,
        grace=settings.outbox_relay_grace_seconds,
        retention=settings.outbox_retention_seconds,
    )
    return Runtime(
        settings=settings,
        engine=engine,
        session_factory=session_factory,
        read_session_factory=make_session_factory(engine, read_only=True),
        broker=broker,
        relay=relay,
        limiter=make_rate_limiter(settings.redis_url, timeout=settings.redis_timeout),
        market_clock=MarketClock(settings.market_speed),
    )
