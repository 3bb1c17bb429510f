"""Sign-in attempts: counted before the password is checked, so concurrent guesses count too.

Three limits, each a moving window (`TG_LOGIN_*`):

- per client address, whatever the email (`login_address_rate_limit`): one address guessing at
  many accounts;
- per email from one address (`login_rate_limit`): one address guessing at one account; a
  successful sign-in clears it (the address-wide count stays);
- per email from everywhere (`login_email_rate_limit`): many addresses guessing at one account.
  This ceiling slows rather than locks: past it, an address the account signed in from lately
  goes on as before, and every other address shares one slow lane for that email
  (`login_email_throttle`). Anyone can push any account past its ceiling, so refusing the
  account outright would let anyone lock any owner out; the owner at a usual address does
  not notice, and at a new one waits for the lane.

Keys use the normalised email, whether or not an account has it, so the limits answer the same
for every email and say nothing about which exist.
"""

from __future__ import annotations

import ipaddress

from app.config import Settings
from app.ratelimit import RateLimiter


def address_key(address: str) -> str:
    """Whom a limit counts: an IPv4 address, or the /64 of an IPv6 one (whoever holds one
    address of a /64 usually holds all of it)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


async def admit(limiter: RateLimiter, settings: Settings, *, email: str, address: str) -> None:
    """Count this attempt, or refuse it (RATE_LIMITED, with retryAfter) before any hashing."""
    where = address_key(address)
    await limiter.consume(settings.login_address_rate_limit, f"login:addr:{where}")
    await limiter.consume(settings.login_rate_limit, f"login:pair:{email}:{where}")
    if await limiter.attempt(settings.login_email_rate_limit, f"login:email:{email}") == 0:
        return
    if await limiter.remembers(_known(email, where)):
        return
    await limiter.consume(settings.login_email_throttle, f"login:slow:{email}")


async def succeeded(limiter: RateLimiter, settings: Settings, *, email: str, address: str) -> None:
    """The owner is at this address: its own count for the email starts again, and the per-email
    ceiling will not slow it for as long as a refresh token lives."""
    where = address_key(address)
    await limiter.clear(settings.login_rate_limit, f"login:pair:{email}:{where}")
    await limiter.remember(_known(email, where), seconds=settings.refresh_token_days * 86400)


def _known(email: str, where: str) -> str:
    return f"login:known:{email}:{where}"
