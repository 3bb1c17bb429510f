from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app import security
from app.config import Settings
from app.errors import Conflict, InvalidInput, Unauthenticated
from app.user import auth
from app.user import service as user_service
from app.user.models import Role
from tests.factories import PASSWORD, make_user


async def test_register_normalises_email_and_hashes_password(session: AsyncSession) -> None:
    user = await make_user(session, email="  Alice@Example.COM ")
    assert user.email == "alice@example.com"
    assert user.password_hash != PASSWORD
    assert security.verify_password(user.password_hash, PASSWORD)
    assert user.role is Role.USER
    assert user.is_active


async def test_register_refuses_duplicate_email_in_any_case(session: AsyncSession) -> None:
    await make_user(session, email="bob@example.com")
    with pytest.raises(Conflict) as caught:
        await make_user(session, email="BOB@example.com")
    assert caught.value.field == "email"


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("email", {"email": "not-an-email"}),
        ("password", {"password": "short"}),
        ("displayName", {"display_name": "   "}),
    ],
)
async def test_register_names_the_field_at_fault(
    session: AsyncSession, field: str, overrides: dict[str, str]
) -> None:
    with pytest.raises(InvalidInput) as caught:
        await make_user(session, **overrides)
    assert caught.value.field == field


async def test_change_password_checks_current_and_revokes_other_sessions(
    session: AsyncSession,
) -> None:
    user = await make_user(session)
    from tests.conftest import test_settings

    settings = test_settings()
    kept = await auth.issue(session, settings, user=user, family_id="kept")
    other = await auth.issue(session, settings, user=user, family_id="other")
    with pytest.raises(InvalidInput):
        await user_service.change_password(
            session,
            user_id=user.id,
            current_password="wrong password",
            new_password="a brand new password",
            keep_session="kept",
        )
    await user_service.change_password(
        session,
        user_id=user.id,
        current_password=PASSWORD,
        new_password="a brand new password",
        keep_session="kept",
    )
    assert security.verify_password(user.password_hash, "a brand new password")
    assert (await auth.refresh(session, settings, token=kept.refresh_token)).user.id == user.id
    with pytest.raises(Unauthenticated):
        await auth.refresh(session, settings, token=other.refresh_token)


async def test_admin_cannot_demote_or_deactivate_self(
    session: AsyncSession, settings: Settings
) -> None:
    admin = await make_user(session, role=Role.ADMIN)
    with pytest.raises(Conflict):
        await user_service.set_role(session, actor_id=admin.id, user_id=admin.id, role=Role.USER)
    with pytest.raises(Conflict):
        await user_service.deactivate(session, settings, actor_id=admin.id, user_id=admin.id)


async def test_list_users_pages_with_cursors(session: AsyncSession) -> None:
    created = [await make_user(session) for _ in range(5)]
    first = await user_service.list_users(session, first=2, after=None)
    second = await user_service.list_users(session, first=10, after=first.end_cursor)
    ids = [u.id for u in first.items] + [u.id for u in second.items]
    assert first.has_next_page
    assert not second.has_next_page
    assert [u.id for u in created] == ids[-5:]
    with pytest.raises(InvalidInput):
        await user_service.list_users(session, first=2, after="garbage!")


async def test_create_admin_promotes_an_existing_account(session: AsyncSession) -> None:
    user = await make_user(session, email="carol@example.com")
    admin = await user_service.create_admin(
        session, email="Carol@example.com", password=PASSWORD, display_name="Carol"
    )
    assert admin.id == user.id
    assert admin.role is Role.ADMIN
