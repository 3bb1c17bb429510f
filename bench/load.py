"""A small closed-loop load generator: C clients, each sending its next request on an answer.

Each client holds one HTTP/1.1 keep-alive connection and speaks the protocol itself over asyncio
streams on uvloop (installed with uvicorn[standard]): a fixed request is encoded to bytes once,
an answer is read as a head and a `Content-Length` (or chunked) body, and nothing else happens
per request but the check. That costs 50-200 us of CPU per request, against 2-3 ms for httpx,
which on a two-core machine took most of a core and reported its own ceiling (about 400 req/s
on /health, where this client sees the server's 4,000-6,500). One process is enough: at the
1,000 req/s we aim for it uses under a tenth of a core (bench/README.md has the figures).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop  # a dependency of uvicorn[standard]; a third less CPU per request than asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.migrate import upgrade_async

ROOT = Path(__file__).resolve().parent.parent
# The PostgreSQL benches make their own database on this server (TG_BENCH_POSTGRES_ADMIN).
ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
# A request without an answer this long counts as an error and its connection is dropped.
TIMEOUT = 30.0

Check = Callable[[int, bytes], bool]


def status_ok(status: int, body: bytes) -> bool:
    return 200 <= status < 300


def graphql_ok(status: int, body: bytes) -> bool:
    """A 200 answer whose JSON has no `errors` (GraphQL reports failures with a 200 too)."""
    if status != 200:
        return False
    answer = json.loads(body)
    return isinstance(answer, dict) and "errors" not in answer


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    check: Check = status_ok

    def encode(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"host: {host}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"content-length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def graphql(
    query: str,
    variables: Mapping[str, Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    path: str = "/graphql",
) -> Request:
    """A GraphQL POST that counts as right only without `errors` in its answer."""
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = dict(variables)
    body = json.dumps(payload, separators=(",", ":")).encode()
    all_headers = {"content-type": "application/json", **(headers or {})}
    return Request("POST", path, body, all_headers, graphql_ok)


@dataclass(frozen=True)
class Figures:
    name: str
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    client_cpu: float  # the load generator's CPU time over the run, as a share of one core
    first_error: str | None = None

    def line(self) -> str:
        q = statistics.quantiles(self.latencies_ms, n=100)
        rps = self.requests / self.seconds
        return (
            f"{self.name:<28} {rps:>8.0f} req/s   p50 {q[49]:6.2f} ms   p95 {q[94]:6.2f} ms"
            f"   p99 {q[98]:6.2f} ms   errors {self.errors}"
        )


class ProtocolError(Exception):
    pass


class Connection:
    """One keep-alive HTTP/1.1 connection carrying one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True

    async def exchange(self, wire: bytes, *, head_only: bool = False) -> tuple[int, bytes]:
        # One request in flight per connection, so the write buffer never fills: no drain().
        self.writer.write(wire)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 "):
            raise ProtocolError(f"not an HTTP/1.1 answer: {head[:40]!r}")
        status = int(head[9:12])
        headers: dict[bytes, bytes] = {}
        for line in head.split(b"\r\n")[1:-2]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        self.reusable = headers.get(b"connection", b"").lower() != b"close"
        if head_only or status in (204, 304):
            return status, b""
        if b"content-length" in headers:
            return status, await self.reader.readexactly(int(headers[b"content-length"]))
        if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            return status, await self._chunked()
        # An HTTP/1.1 body framed by closing the connection: allowed, never sent by uvicorn.
        raise ProtocolError("an answer without Content-Length or chunked framing")

    async def _chunked(self) -> bytes:
        chunks = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append((await self.reader.readexactly(size + 2))[:-2])
        while await self.reader.readuntil(b"\r\n") != b"\r\n":
            pass  # trailer fields
        return b"".join(chunks)

    def close(self) -> None:
        self.writer.close()


@dataclass
class _Tally:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def error(self, description: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or description


Target = Request | Callable[[int], Request]


def _encoder(target: Target, host: str) -> Callable[[int], tuple[Request, bytes]]:
    """The request numbered n and its bytes; a fixed request is encoded only once."""
    if isinstance(target, Request):
        fixed = (target, target.encode(host))
        return lambda _: fixed

    def fresh(number: int) -> tuple[Request, bytes]:
        request = target(number)
        return request, request.encode(host)

    return fresh


async def _client(
    target: Target,
    address: tuple[str, int],
    number: int,
    stride: int,
    tally: _Tally,
    *,
    measure_from: float,
    stop: float,
) -> None:
    """Start requests until `stop`; those answered (or failed) after `measure_from` count."""
    encode = _encoder(target, f"{address[0]}:{address[1]}")
    connection: Connection | None = None
    while (start := time.perf_counter()) < stop:
        request, wire = encode(number)
        number += stride
        ok, problem = False, ""
        try:
            async with asyncio.timeout(TIMEOUT):
                if connection is None:
                    connection = Connection(*await asyncio.open_connection(*address))
                status, body = await connection.exchange(wire, head_only=request.method == "HEAD")
            if not (ok := request.check(status, body)):
                problem = f"{status} {body[:200]!r}"
        except (OSError, EOFError, TimeoutError, ProtocolError, ValueError) as exc:
            problem = f"{type(exc).__name__}: {exc or 'no answer in time'}"
        except asyncio.LimitOverrunError as exc:
            problem = f"an answer head too long: {exc}"
        if connection is not None and not (ok and connection.reusable):
            connection.close()
            connection = None
        if (end := time.perf_counter()) >= measure_from:
            tally.latencies_ms.append((end - start) * 1000)
            if not ok:
                tally.error(f"{request.method} {request.path}: {problem}")
    if connection is not None:
        connection.close()


async def _drive(
    target: Target, address: tuple[str, int], *, clients: int, seconds: float, warmup: float
) -> tuple[_Tally, float]:
    tallies = [_Tally() for _ in range(clients)]
    measure_from = time.perf_counter() + warmup
    stop = measure_from + seconds
    await asyncio.gather(
        *(
            _client(target, address, i, clients, tally, measure_from=measure_from, stop=stop)
            for i, tally in enumerate(tallies)
        )
    )
    elapsed = time.perf_counter() - measure_from
    total = _Tally([ms for tally in tallies for ms in tally.latencies_ms])
    for tally in tallies:
        total.errors += tally.errors
        total.first_error = total.first_error or tally.first_error
    return total, elapsed


def run(
    name: str,
    target: Target,
    *,
    base_url: str,
    clients: int = 10,
    seconds: float = 10.0,
    warmup: float = 2.0,
) -> Figures:
    """Drive `target` from `clients` closed loops for `seconds` after `warmup` seconds.

    `target` is one request sent again and again, or a factory called with a number unique
    within the run (for requests that must differ, such as orders with their own ids).
    """
    url = urlsplit(base_url)
    address = (url.hostname or "127.0.0.1", url.port or 80)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        tally, elapsed = runner.run(
            _drive(target, address, clients=clients, seconds=seconds, warmup=warmup)
        )
    cpu = (time.process_time() - cpu_before) / (time.perf_counter() - wall_before)
    return Figures(
        name=name,
        requests=len(tally.latencies_ms),
        errors=tally.errors,
        seconds=elapsed,
        latencies_ms=tally.latencies_ms,
        client_cpu=cpu,
        first_error=tally.first_error,
    )


# Straight to the server under test, whatever proxy the environment names.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def fetch(base_url: str, request: Request) -> bytes:
    """Send one request outside any run (setup such as logging in); raise unless it is right."""
    http = urllib.request.Request(
        base_url + request.path,
        data=request.body or None,
        headers=dict(request.headers),
        method=request.method,
    )
    status: int
    body: bytes
    try:
        with _DIRECT.open(http, timeout=TIMEOUT) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    if not request.check(status, body):
        raise RuntimeError(f"{request.method} {request.path}: {status} {body[:500]!r}")
    return body


def bench_database_url(name: str) -> str:
    """The URL of the bench database `name`, beside the admin database."""
    admin = os.environ.get("TG_BENCH_POSTGRES_ADMIN", ADMIN_URL)
    return admin.rsplit("/", 1)[0] + f"/{name}"


async def fresh_database(name: str) -> str:
    """Drop and create the bench database `name`, migrate it, and return its URL."""
    admin = create_async_engine(os.environ.get("TG_BENCH_POSTGRES_ADMIN", ADMIN_URL))
    async with admin.connect() as connection:
        await connection.execution_options(isolation_level="AUTOCOMMIT")
        await connection.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        await connection.execute(text(f"CREATE DATABASE {name}"))
    await admin.dispose()
    url = bench_database_url(name)
    await upgrade_async(url)
    return url


@dataclass
class Served:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far (Linux: /proc), for a share of a core."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server(env: dict[str, str], port: int = 8765) -> Iterator[str]:
    """Migrate, then start one `tradegraph serve` process; yields its base URL."""
    with served(env, port) as process:
        yield process.url


@contextmanager
def served(env: dict[str, str], port: int = 8765) -> Iterator[Served]:
    """`server`, also telling the process (its id, its CPU time)."""
    full_env = {**os.environ, "TG_LOG_LEVEL": "WARNING", **env}
    tradegraph = str(Path(sys.executable).parent / "tradegraph")
    subprocess.run([tradegraph, "migrate"], env=full_env, check=True, cwd=ROOT)
    process = subprocess.Popen([tradegraph, "serve", "--port", str(port)], env=full_env, cwd=ROOT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}")
            try:
                fetch(base_url, Request("GET", "/health"))
                break
            except (OSError, RuntimeError):
                time.sleep(0.1)
        else:
            raise RuntimeError("the server did not start")
        yield Served(base_url, process.pid)
    finally:
        process.terminate()
        process.wait(10)
