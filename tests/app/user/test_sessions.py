"""Login sessions end their access tokens: `auth.authenticate` asks whether the session is open."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app import events, security
from app.config import Settings
from app.db import utcnow
from app.errors import Unauthenticated
from app.user import auth, revocation
from app.user import service as user_service
from app.user.models import RefreshToken, Role, User
from tests.factories import PASSWORD, make_user


async def _sign_in(
    session: AsyncSession, settings: Settings, user: User
) -> tuple[auth.TokenPair, security.AccessClaims]:
    pair = await auth.login(session, settings, user_id=user.id)
    return pair, security.decode_access_token(settings, pair.access_token)


async def _refused(session: AsyncSession, claims: security.AccessClaims) -> bool:
    try:
        await auth.authenticate(session, claims)
    except Unauthenticated:
        return True
    return False


async def test_an_open_session_authenticates_its_user(
    session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session)
    _, claims = await _sign_in(session, settings, user)
    assert (await auth.authenticate(session, claims)).id == user.id


async def test_logout_ends_that_sessions_access_tokens_only(
    session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session)
    ended, ended_claims = await _sign_in(session, settings, user)
    _, kept_claims = await _sign_in(session, settings, user)

    assert await auth.logout(session, token=ended.refresh_token)

    assert await _refused(session, ended_claims)
    assert not await _refused(session, kept_claims)


async def test_a_reused_refresh_token_ends_every_access_token_of_its_session(
    session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session)
    first, first_claims = await _sign_in(session, settings, user)
    rotated = await auth.refresh(session, settings, token=first.refresh_token)
    rotated_claims = security.decode_access_token(settings, rotated.access_token)
    assert rotated_claims.session_id == first_claims.session_id
    assert not await _refused(session, first_claims)

    with pytest.raises(auth.RefreshTokenReused):
        await auth.refresh(session, settings, token=first.refresh_token)

    assert await _refused(session, first_claims)
    assert await _refused(session, rotated_claims)


async def test_a_new_password_ends_the_other_sessions_but_not_the_current_one(
    session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session)
    _, current = await _sign_in(session, settings, user)
    _, other = await _sign_in(session, settings, user)

    await user_service.change_password(
        session,
        user_id=user.id,
        current_password=PASSWORD,
        new_password="a brand new password",
        keep_session=current.session_id,
    )

    assert not await _refused(session, current)
    assert await _refused(session, other)


async def test_deactivation_ends_every_session(session: AsyncSession, settings: Settings) -> None:
    admin = await make_user(session, role=Role.ADMIN)
    user = await make_user(session)
    sessions = [(await _sign_in(session, settings, user))[1] for _ in range(2)]

    await user_service.deactivate(session, settings, actor_id=admin.id, user_id=user.id)

    for claims in sessions:
        assert await _refused(session, claims)


async def test_a_session_whose_refresh_tokens_expired_has_ended(
    session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session)
    _, claims = await _sign_in(session, settings, user)
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == claims.session_id)
        .values(expires_at=utcnow() - timedelta(seconds=1))
    )
    assert await _refused(session, claims)


async def test_a_token_naming_a_session_that_is_not_the_users_is_refused(
    session: AsyncSession, settings: Settings
) -> None:
    user = await make_user(session)
    stranger = await make_user(session)
    _, own = await _sign_in(session, settings, user)
    _, theirs = await _sign_in(session, settings, stranger)

    assert await _refused(session, replace(own, session_id=theirs.session_id))
    assert await _refused(session, replace(own, session_id="no-such-session"))


Revoke = Callable[[AsyncSession, Settings, User], Awaitable[object]]


async def _logout(session: AsyncSession, settings: Settings, user: User) -> object:
    pair, _ = await _sign_in(session, settings, user)
    return await auth.logout(session, token=pair.refresh_token)


async def _reuse(session: AsyncSession, settings: Settings, user: User) -> object:
    pair, _ = await _sign_in(session, settings, user)
    await auth.refresh(session, settings, token=pair.refresh_token)
    with pytest.raises(auth.RefreshTokenReused):
        await auth.refresh(session, settings, token=pair.refresh_token)
    return None


async def _new_password(session: AsyncSession, settings: Settings, user: User) -> object:
    return await user_service.change_password(
        session,
        user_id=user.id,
        current_password=PASSWORD,
        new_password="a brand new password",
        keep_session=None,
    )


async def _deactivate(session: AsyncSession, settings: Settings, user: User) -> object:
    admin = await make_user(session, role=Role.ADMIN)
    return await user_service.deactivate(session, settings, actor_id=admin.id, user_id=user.id)


@pytest.mark.parametrize(
    "revoke",
    [_logout, _reuse, _new_password, _deactivate],
    ids=["logout", "reuse", "new-password", "deactivation"],
)
async def test_every_revocation_is_announced_on_the_users_sessions_channel(
    session: AsyncSession, settings: Settings, revoke: Revoke
) -> None:
    user = await make_user(session)
    announced = events.Event(revocation.channel(user.id), revocation.REVOKED, {"id": user.id})
    await _sign_in(session, settings, user)
    assert announced not in events.pending(session)

    await revoke(session, settings, user)

    assert announced in events.pending(session)
    assert revocation.channel(user.id) == f"user:{user.id}:sessions"
