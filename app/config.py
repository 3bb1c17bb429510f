"""Settings read from `TG_*` environment variables, validated once and cached."""

from __future__ import annotations

import ipaddress
from decimal import Decimal
from functools import lru_cache
from typing import Annotated, Literal

from limits import parse as parse_rate
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.redis_options import DEFAULT_TIMEOUT as DEFAULT_REDIS_TIMEOUT

# The development secret is public (it is in this file); production refuses to start with it.
DEVELOPMENT_SECRET = "development-secret-change-me-0123456789abcdef"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///var/tradegraph.db"


class ConfigurationError(Exception):
    """The configuration is unsafe or inconsistent; the message fits on one line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TG_", env_file=".env", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    debug: bool = False
    database_url: str = DEFAULT_DATABASE_URL
    database_pool_size: int = Field(default=20, ge=1)
    # The longest a request waits for a pooled connection (or for a new one to connect) before
    # it is answered SERVICE_UNAVAILABLE. A request may wait twice (its sign-in read, then its
    # unit of work), so 2 s keeps it well inside a client's patience of 5-10 s.
    database_pool_timeout: float = Field(default=2.0, gt=0, le=60)
    # GraphQL HTTP requests one process serves at once, and how long one past them waits for a
    # turn before it is refused with 503, SERVICE_UNAVAILABLE (docs/architecture.md, "Requests").
    max_in_flight: int = Field(default=32, ge=1)
    request_queue_timeout: float = Field(default=1.0, ge=0, le=30)
    redis_url: str | None = None
    # The longest any Redis client waits to connect or for a reply, in seconds
    # (app/redis_options.py): past it the caller carries on without Redis.
    redis_timeout: float = Field(default=DEFAULT_REDIS_TIMEOUT, gt=0, le=30)
    secret_key: SecretStr = SecretStr(DEVELOPMENT_SECRET)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    access_token_minutes: int = Field(default=15, ge=1, le=24 * 60)
    refresh_token_days: int = Field(default=30, ge=1, le=365)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: str = "INFO"
    log_json: bool | None = None
    graphiql: bool = True
    max_query_depth: int = Field(default=12, ge=1)
    max_query_tokens: int = Field(default=2000, ge=10)
    max_query_aliases: int = Field(default=30, ge=1)
    # The objects an operation may ask for, lists multiplied through nesting (schema/cost.py).
    max_query_cost: int = Field(default=50_000, ge=1)
    max_body_bytes: int = Field(default=1_000_000, ge=1024)
    # Sign-in attempts, each counted before its password is checked (app/user/login_limits.py):
    # per email from one client address, per client address, and per email from everywhere;
    # past that ceiling, the addresses the account has not signed in from share a slow lane.
    login_rate_limit: str = "10/minute"
    login_address_rate_limit: str = "30/minute"
    login_email_rate_limit: str = "100/hour"
    login_email_throttle: str = "2/minute"
    mutation_rate_limit: str = "300/minute"
    # Peers whose X-Forwarded-For is believed (IPs or CIDRs, comma-separated); empty: none, and
    # the client address is the peer's own.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    refresh_token_cleanup_cron: str = "17 3 * * *"
    # The longest a job may run. ARQ runs a job whose worker died (killed, lost its host) again
    # once this much and 10 s more have passed since it started, on any worker; a bot's job
    # gives up retrying an infrastructure fault at half of it.
    job_timeout_seconds: int = Field(default=60, ge=1, le=3600)
    # Events a subscription may have waiting; past it market data drops its oldest, and an
    # order, trade or position feed closes its connection (4001) rather than skip one.
    subscription_queue: int = Field(default=1000, ge=1)
    # The outbox (app/outbox): how long events stay for feeds to resume from (`after`); how
    # often each process relays what no publish after commit delivered, and how old such an
    # event must be before any process's relay takes it (its own process marks it meanwhile).
    outbox_retention_seconds: int = Field(default=3600, ge=1)
    outbox_relay_seconds: float = Field(default=1.0, gt=0, le=60)
    outbox_relay_grace_seconds: float = Field(default=5.0, gt=0, le=3600)
    # Open WebSockets one process takes per signed-in user and per client address; past them a
    # new connection is closed with 4429 (schema/sockets.py).
    max_websockets_per_user: int = Field(default=20, ge=1)
    max_websockets_per_address: int = Field(default=1000, ge=1)
    # permessage-deflate on WebSocket frames: feed messages are small JSON, which compression
    # barely shrinks at a cost of about a fifth of the server's time in a broadcast.
    ws_compression: bool = False
    # Answers to repeated trading reads kept per process (schema/response_cache.py); 0: off.
    response_cache_entries: int = Field(default=10_000, ge=0)
    response_cache_seconds: float = Field(default=60, gt=0)
    # The simulated market: one random-walk step per symbol every this many seconds (0: off).
    market_tick_seconds: int = Field(default=5, ge=0, le=60)
    market_seed: int = 20240101
    # Simulated seconds per real second (app/market/clock.py); above 1 for demos and tests.
    market_speed: int = Field(default=1, ge=1, le=3600)
    # The paper exchange: starting cash, market-order slippage (basis points) and fee rate.
    paper_starting_balance: Decimal = Field(default=Decimal(10000), gt=0)
    paper_slippage_bps: Decimal = Field(default=Decimal(5), ge=0, le=1000)
    paper_fee_rate: Decimal = Field(default=Decimal("0.001"), ge=0, lt=1)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            # Parsed here so a typo stops the start rather than trusting nobody unnoticed.
            return [str(ipaddress.ip_network(part, strict=False)) for part in value]
        return value

    @field_validator(
        "login_rate_limit",
        "login_address_rate_limit",
        "login_email_rate_limit",
        "login_email_throttle",
        "mutation_rate_limit",
    )
    @classmethod
    def _is_a_rate(cls, value: str) -> str:
        parse_rate(value)  # "10/minute", "2 per 30 seconds"; ValueError otherwise
        return value

    @field_validator("market_tick_seconds")
    @classmethod
    def _tick_divides_a_minute(cls, value: int) -> int:
        # The tick is a cron seconds field (*/N): only a divisor of 60 ticks at even intervals.
        if value and 60 % value:
            raise ValueError(
                "must be 0 (off) or divide 60 (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)"
            )
        return value

    @field_validator("redis_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _production_is_safe(self) -> Settings:
        if self.environment != "production":
            return self
        if self.secret_key.get_secret_value() == DEVELOPMENT_SECRET:
            raise ValueError("TG_SECRET_KEY must be set to a secret of your own in production")
        if len(self.secret_key.get_secret_value()) < 32:
            raise ValueError("TG_SECRET_KEY must be at least 32 characters in production")
        if self.debug:
            raise ValueError("TG_DEBUG must be off in production")
        return self

    @property
    def is_embedded(self) -> bool:
        """No Redis: pub/sub, jobs and rate limits live in this process."""
        return self.redis_url is None

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else self.environment == "production"


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning a validation failure into one readable line."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        prefix = f"TG_{where.upper()}: " if where else ""
        raise ConfigurationError(f"{prefix}{message}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
