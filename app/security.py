"""Password hashing, JWT access tokens and opaque refresh tokens."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from app.config import Settings
from app.db import utcnow
from app.errors import Unauthenticated

_hasher = PasswordHasher()
# Verified against when the email is unknown, so a miss costs as long as a wrong password.
_DUMMY_HASH = _hasher.hash("tradegraph-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def hash_password_async(password: str) -> str:
    # Argon2 is deliberately slow (tens of ms) and releases the GIL: keep it off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    # The token carries 256 random bits, so a fast hash is enough: only its digest is stored.
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: int
    role: str
    session_id: str
    expires_at: datetime


def create_access_token(
    settings: Settings, *, user_id: int, role: str, session_id: str, now: datetime | None = None
) -> str:
    issued = now or utcnow()
    claims = {
        "sub": str(user_id),
        "role": role,
        "sid": session_id,
        "iat": issued,
        "exp": issued + timedelta(minutes=settings.access_token_minutes),
        "typ": "access",
    }
    return jwt.encode(claims, settings.secret_key.get_secret_value(), settings.jwt_algorithm)


# Verified tokens, so a client's every request does not verify its signature again. Bounded;
# a hit is still checked for expiry. A token's claims never change (they are signed). Whether
# its login session was ended since is not a claim: every request asks the database
# (app/user/auth.py `authenticate`), so nothing kept here outlives a revocation.
_VERIFIED: dict[tuple[str, str], AccessClaims] = {}
_VERIFIED_MAX = 10_000


def decode_access_token(settings: Settings, token: str) -> AccessClaims:
    key = (settings.secret_key.get_secret_value(), token)
    known = _VERIFIED.get(key)
    if known is not None:
        if known.expires_at <= utcnow():
            raise Unauthenticated("access token expired")
        return known
    claims = _verify(settings, token)
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[key] = claims
    return claims


def _verify(settings: Settings, token: str) -> AccessClaims:
    try:
        claims = jwt.decode(
            token,
            settings.secret_key.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["sub", "exp", "iat", "sid"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("access token expired") from None
    except jwt.PyJWTError:
        raise Unauthenticated("invalid access token") from None
    if claims.get("typ") != "access" or not str(claims["sub"]).isdigit():
        raise Unauthenticated("invalid access token")
    return AccessClaims(
        user_id=int(claims["sub"]),
        role=str(claims.get("role", "user")),
        session_id=str(claims["sid"]),
        expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=utcnow().tzinfo),
    )
