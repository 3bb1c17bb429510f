"""Domain errors: raised by services, turned into GraphQL errors in one place (schema/errors.py)."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """An expected failure a client can act on; `code` becomes `extensions.code`."""

    code = "BAD_REQUEST"
    # Some refusals are facts worth keeping (a spent refresh token revokes its session, a
    # rejected order is stored): the unit of work commits them before the error reaches the client.
    keep_changes = False

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def details(self) -> dict[str, Any]:
        """Facts beyond the message that a client acts on; they join `extensions`."""
        return {}


class InvalidInput(DomainError):
    code = "BAD_USER_INPUT"


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    code = "FORBIDDEN"


class NotFound(DomainError):
    code = "NOT_FOUND"


class Conflict(DomainError):
    code = "CONFLICT"


class RateLimited(DomainError):
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {} if self.retry_after is None else {"retryAfter": self.retry_after}


class RiskRejected(DomainError):
    code = "RISK_REJECTED"


class ServiceUnavailable(DomainError):
    """The infrastructure cannot serve the request just now (app/availability.py): the same
    request is likely to succeed after `retry_after` seconds."""

    code = "SERVICE_UNAVAILABLE"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def details(self) -> dict[str, Any]:
        return {"retryAfter": self.retry_after}
