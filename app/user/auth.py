"""Login sessions: access tokens, rotating refresh tokens and their revocation."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app import security
from app.config import Settings
from app.db import utcnow
from app.errors import Unauthenticated
from app.ratelimit import RateLimiter
from app.user import login_limits, revocation
from app.user.models import RefreshToken, User

WRONG_CREDENTIALS = "invalid email or password"


class RefreshTokenReused(Unauthenticated):
    """A spent refresh token came back: someone holds a copy, so its whole session is revoked."""

    keep_changes = True


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    user: User


async def check_credentials(
    session: AsyncSession,
    settings: Settings,
    limiter: RateLimiter,
    *,
    email: str,
    password: str,
    address: str,
) -> User:
    """The active user with these credentials.

    The attempt is counted (or refused) before anything is read or hashed: counted after the
    slow hash, a burst of guesses sent at once would all be checked before the first counted
    (app/user/login_limits.py). Only reads: the hash comparison happens outside any write
    transaction.
    """
    email_key = email.strip().lower()
    await login_limits.admit(limiter, settings, email=email_key, address=address)
    user = await session.scalar(select(User).where(User.email == email_key))
    valid = await security.verify_password_async(user.password_hash if user else None, password)
    if user is None or not valid or not user.is_active:
        raise Unauthenticated(WRONG_CREDENTIALS)
    await login_limits.succeeded(limiter, settings, email=email_key, address=address)
    return user


async def login(session: AsyncSession, settings: Settings, *, user_id: int) -> TokenPair:
    """Open a new login session for a user whose credentials were just checked."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthenticated(WRONG_CREDENTIALS)
    return await issue(session, settings, user=user, family_id=uuid.uuid4().hex)


async def issue(
    session: AsyncSession, settings: Settings, *, user: User, family_id: str
) -> TokenPair:
    now = utcnow()
    token = security.new_refresh_token()
    session.add(
        RefreshToken(
            user_id=user.id,
            family_id=family_id,
            token_hash=security.hash_refresh_token(token),
            created_at=now,
            expires_at=now + timedelta(days=settings.refresh_token_days),
        )
    )
    await session.flush()
    access = security.create_access_token(
        settings, user_id=user.id, role=user.role.value, session_id=family_id, now=now
    )
    return TokenPair(access_token=access, refresh_token=token, user=user)


async def refresh(session: AsyncSession, settings: Settings, *, token: str) -> TokenPair:
    """Spend a refresh token for a new pair; a second spend of the same token is theft."""
    now = utcnow()
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == security.hash_refresh_token(token))
    )
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        raise Unauthenticated("invalid refresh token")
    # The conditional update is the arbiter between two concurrent refreshes of one token.
    spent: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
        update(RefreshToken)
        .where(RefreshToken.id == row.id, RefreshToken.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if spent.rowcount != 1:
        await revoke_family(session, user_id=row.user_id, family_id=row.family_id, now=now)
        raise RefreshTokenReused("refresh token already used; the session is revoked")
    user = await session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("invalid refresh token")
    return await issue(session, settings, user=user, family_id=row.family_id)


async def logout(session: AsyncSession, *, token: str) -> bool:
    """Revoke the login session the token belongs to; false if there was none to revoke."""
    row = await session.scalar(
        select(RefreshToken).where(RefreshToken.token_hash == security.hash_refresh_token(token))
    )
    if row is None or row.revoked_at is not None:
        return False
    await revoke_family(session, user_id=row.user_id, family_id=row.family_id, now=utcnow())
    return True


async def revoke_family(
    session: AsyncSession, *, user_id: int, family_id: str, now: datetime
) -> None:
    """End one login session: its refresh tokens, and with them its access tokens."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .execution_options(synchronize_session=False)
    )
    revocation.announce(session, user_id=user_id)


async def revoke_sessions(session: AsyncSession, *, user_id: int, keep_family: str | None) -> None:
    """End every login session of the user but `keep_family`."""
    query = update(RefreshToken).where(
        RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None)
    )
    if keep_family is not None:
        query = query.where(RefreshToken.family_id != keep_family)
    await session.execute(
        query.values(revoked_at=utcnow()).execution_options(synchronize_session=False)
    )
    revocation.announce(session, user_id=user_id)


async def authenticate(session: AsyncSession, claims: security.AccessClaims) -> User:
    """The user behind a valid access token, while the account is active and the token's login
    session is open (a refresh token of its family neither revoked nor expired).

    One statement, asked on every request and again by an open connection when a revocation
    is announced: the signature proves who the token was issued to, not that its session was
    not ended since (logout, a spent refresh token presented again, a new password set in
    another session, deactivation).
    """
    session_open = (
        select(RefreshToken.id)
        .where(
            RefreshToken.family_id == claims.session_id,
            RefreshToken.user_id == claims.user_id,
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > utcnow(),
        )
        .exists()
    )
    user = await session.scalar(
        select(User).where(User.id == claims.user_id, User.is_active, session_open)
    )
    if user is None:
        raise Unauthenticated("the session has ended; sign in again")
    return user


async def delete_expired(session: AsyncSession, *, now: datetime | None = None) -> int:
    result: CursorResult[tuple[()]] = await session.execute(  # type: ignore[assignment]
        delete(RefreshToken)
        .where(RefreshToken.expires_at <= (now or utcnow()))
        .execution_options(synchronize_session=False)
    )
    await session.flush()
    return result.rowcount
