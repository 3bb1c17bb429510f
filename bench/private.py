"""A private PostgreSQL cluster and a private Redis for one bench run, which it may restart.

A bench that breaks its infrastructure on purpose must never touch the servers other work runs
on (PostgreSQL on 5432, Redis on 6379): these start on free ports in a temporary directory and
are removed when the run ends, however it ends. PostgreSQL refuses to run as root, so as root
its commands run as the `postgres` account (`runuser`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

PG_BIN = Path(os.environ.get("TG_BENCH_PG_BIN", "/usr/lib/postgresql/15/bin"))
# Long enough for every connection of two API processes, the worker and the checks.
PG_MAX_CONNECTIONS = 200
START_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice for an ephemeral bind)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Outage:
    """A restart: from the moment the server stopped serving to the moment it served again,
    in seconds of `time.monotonic()`."""

    name: str
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


class PrivateRedis:
    """`redis-server` on a port of its own, without persistence: a restart comes back empty,
    as a crashed cache without a disk would (queued jobs, counters and limits are gone)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            shutil.which("redis-server") or "redis-server",
            *("--port", str(self.port), "--bind", "127.0.0.1", "--save", ""),
            *("--appendonly", "no", "--dir", str(self.directory)),
            *("--logfile", str(self.directory / "redis.log")),
        ]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                try:
                    client.ping()
                    return
                except redis.RedisError:
                    if self._process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server on {self.port} did not start") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait()
        self._process = None

    def restart(self, *, down: float) -> Outage:
        """SIGKILL (a crash: no shutdown, clients see their connections drop), `down` seconds
        without Redis, then a fresh server on the same port."""
        start = time.monotonic()
        self.stop()
        time.sleep(down)
        self.start()
        return Outage("Redis", start, time.monotonic())


class PrivatePostgres:
    """A PostgreSQL cluster of its own (initdb, trust authentication, 127.0.0.1 only)."""

    def __init__(self, directory: Path) -> None:
        self.data = directory / "pgdata"
        self.log = directory / "postgresql.log"
        self.port = free_port()
        self.admin_url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run(
            [*as_postgres, *command], check=True, stdin=subprocess.DEVNULL, capture_output=True
        )

    def init(self) -> None:
        self.data.mkdir(mode=0o700)
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            for path in (self.data.parent, self.data):
                os.chown(path, account.pw_uid, account.pw_gid)
        self._run(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
            f"-c max_connections={PG_MAX_CONNECTIONS}"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", str(int(START_TIMEOUT)), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def restart(self, *, down: float) -> Outage:
        """A fast shutdown (every session ended at once, as a failover or an operator's restart
        does), `down` seconds without a server, then a start that waits until it accepts
        connections."""
        start = time.monotonic()
        self.stop("fast")
        time.sleep(down)
        self.start()
        return Outage("PostgreSQL", start, time.monotonic())


@contextmanager
def private_servers(directory: Path) -> Iterator[tuple[PrivatePostgres, PrivateRedis]]:
    """Both servers started under `directory`; stopped, and their files removed, at the end."""
    postgres, cache = PrivatePostgres(directory), PrivateRedis(directory)
    try:
        postgres.init()
        postgres.start()
        cache.start()
        yield postgres, cache
    finally:
        cache.stop()
        if postgres.running():
            # Already stopping, perhaps: the files go either way.
            with contextlib.suppress(subprocess.CalledProcessError):
                postgres.stop("immediate")
        shutil.rmtree(postgres.data, ignore_errors=True)
