"""A small closed-loop load generator: C clients, each sending its next request on an answer."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Figures:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    def line(self) -> str:
        q = statistics.quantiles(self.latencies_ms, n=100)
        rps = self.requests / self.seconds
        return (
            f"{self.name:<28} {rps:>8.0f} req/s   p50 {q[49]:6.2f} ms   p95 {q[94]:6.2f} ms"
            f"   p99 {q[98]:6.2f} ms   errors {self.errors}"
        )


async def run(
    name: str,
    request: Callable[[httpx.AsyncClient], Awaitable[bool]],
    *,
    base_url: str,
    clients: int = 10,
    seconds: float = 10.0,
    warmup: float = 1.0,
) -> Figures:
    """Drive `request` (True when the answer was right) from `clients` loops for `seconds`."""
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
        warm_until = time.perf_counter() + warmup
        while time.perf_counter() < warm_until:
            await request(http)
        stop = time.perf_counter() + seconds

        async def loop() -> None:
            nonlocal errors
            while (start := time.perf_counter()) < stop:
                ok = await request(http)
                latencies.append((time.perf_counter() - start) * 1000)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return Figures(name, len(latencies), errors, elapsed, latencies)


@contextmanager
def server(env: dict[str, str], port: int = 8765) -> Iterator[str]:
    """Migrate, then start one `tradegraph serve` process; yields its base URL."""
    full_env = {**os.environ, "TG_LOG_LEVEL": "WARNING", **env}
    tradegraph = str(Path(sys.executable).parent / "tradegraph")
    subprocess.run([tradegraph, "migrate"], env=full_env, check=True, cwd=ROOT)
    process = subprocess.Popen([tradegraph, "serve", "--port", str(port)], env=full_env, cwd=ROOT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base_url}/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield base_url
    finally:
        process.terminate()
        process.wait(10)
