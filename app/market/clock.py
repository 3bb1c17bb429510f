"""The simulated market's clock: the wall clock, or a faster one for demos and tests.

At speed N every real second moves the market N seconds, so with N = 60 and a tick a second a
1m candle closes every second and a bot on 1m candles trades within moments. The faster clock
starts at the later of now and the market's last tick (a restarted process must not go back in
time, where every tick would be refused as already taken) and is per process: run a faster
market with one worker (or embedded), since two workers would each keep their own time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import utcnow
from app.market import service as market_service


class MarketClock:
    def __init__(self, speed: int = 1, *, wall: Callable[[], datetime] = utcnow) -> None:
        self.speed = speed
        self._wall = wall
        self._anchor: tuple[datetime, datetime] | None = None  # (real, simulated)

    async def now(self, session: AsyncSession) -> datetime:
        """The market's time, in whole seconds (a step drawn at a second replays the same)."""
        real = self._wall()
        if self.speed == 1:
            return real.replace(microsecond=0)
        if self._anchor is None:
            latest = await market_service.latest_tick(session)
            self._anchor = (real, real if latest is None else max(real, latest))
        started, simulated = self._anchor
        return (simulated + (real - started) * self.speed).replace(microsecond=0)
