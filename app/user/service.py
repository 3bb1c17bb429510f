"""Accounts: registration, profiles and what an admin may do to them."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app import events, security
from app.bot import service as bot_service
from app.config import Settings
from app.errors import Conflict, InvalidInput, NotFound
from app.order import service as order_service
from app.pagination import Page, paginate
from app.user import auth, revocation
from app.user.models import Role, User
from app.validation import EMAIL, check_length

MIN_PASSWORD = 10
MAX_PASSWORD = 1024
DEACTIVATED = "stopped: the owner's account was deactivated"


def _changed(session: AsyncSession, user: User) -> None:
    events.record(
        session,
        events.Event(events.user_channel(user.id, "account"), "user.changed", {"id": user.id}),
    )


def normalise_email(email: str) -> str:
    check_length(email, field="email", maximum=EMAIL)
    try:
        checked = validate_email(email.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(str(exc), field="email") from None
    # Domains are case-insensitive; local parts are treated so too, as every big provider does.
    return checked.normalized.lower()


def check_password(password: str, *, field: str = "password") -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD} characters", field=field)
    if len(password) > MAX_PASSWORD:
        raise InvalidInput(f"password must be at most {MAX_PASSWORD} characters", field=field)


def check_display_name(display_name: str) -> str:
    name = display_name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidInput("display name must be 1 to 100 characters", field="displayName")
    return name


async def register(
    session: AsyncSession,
    *,
    email: str,
    password: str,
    display_name: str,
    role: Role = Role.USER,
) -> User:
    address = normalise_email(email)
    check_password(password)
    name = check_display_name(display_name)
    # Hash before the first statement: on SQLite the write lock is held from there to commit.
    password_hash = await security.hash_password_async(password)
    if await session.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict("an account with this email already exists", field="email")
    user = User(email=address, password_hash=password_hash, display_name=name, role=role)
    session.add(user)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        # Two registrations raced past the check above; the unique index decides.
        raise Conflict("an account with this email already exists", field="email") from None
    return user


async def get(session: AsyncSession, *, user_id: int) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


async def update_profile(session: AsyncSession, *, user_id: int, display_name: str) -> User:
    user = await get(session, user_id=user_id)
    user.display_name = check_display_name(display_name)
    _changed(session, user)
    await session.flush()
    return user


async def change_password(
    session: AsyncSession,
    *,
    user_id: int,
    current_password: str,
    new_password: str,
    keep_session: str | None,
) -> User:
    """Set a new password and sign out every other login session of the user."""
    user = await get(session, user_id=user_id)
    # Bounded before Argon2 sees it, like every password (no stored one is longer).
    check_length(current_password, field="currentPassword", maximum=MAX_PASSWORD)
    if not await security.verify_password_async(user.password_hash, current_password):
        raise InvalidInput("current password is wrong", field="currentPassword")
    check_password(new_password, field="newPassword")
    user.password_hash = await security.hash_password_async(new_password)
    await auth.revoke_sessions(session, user_id=user.id, keep_family=keep_session)
    await session.flush()
    return user


async def list_users(session: AsyncSession, *, first: int, after: str | None) -> Page[User]:
    return await paginate(session, select(User), User.id, first=first, after=after)


async def set_role(session: AsyncSession, *, actor_id: int, user_id: int, role: Role) -> User:
    if actor_id == user_id:
        raise Conflict("admins cannot change their own role", field="id")
    user = await get(session, user_id=user_id)
    user.role = role
    _changed(session, user)
    await session.flush()
    return user


async def deactivate(
    session: AsyncSession, settings: Settings, *, actor_id: int, user_id: int
) -> User:
    """Deactivation is immediate and reaches everything, in this one transaction: the user's
    running and paused bots stop (with the reason) and every open order of theirs is
    cancelled; their sessions are revoked, so every request refuses their tokens, and the
    revocation is announced, so their open connections ask again and close (4403)."""
    if actor_id == user_id:
        raise Conflict("admins cannot deactivate themselves", field="id")
    user = await get(session, user_id=user_id)
    # Bots first: the lock order is bot -> account -> orders -> positions.
    await bot_service.stop_all(session, settings, owner_id=user.id, reason=DEACTIVATED)
    await order_service.cancel_all_orders(session, settings, owner_id=user.id)
    user.is_active = False
    await auth.revoke_sessions(session, user_id=user.id, keep_family=None)
    revocation.announce(session, user_id=user.id)
    _changed(session, user)
    await session.flush()
    return user


async def create_admin(
    session: AsyncSession, *, email: str, password: str, display_name: str
) -> User:
    """Make an admin: promote the account if it exists, otherwise register one."""
    address = normalise_email(email)
    existing = await session.scalar(select(User).where(User.email == address))
    if existing is None:
        return await register(
            session, email=address, password=password, display_name=display_name, role=Role.ADMIN
        )
    existing.role = Role.ADMIN
    existing.is_active = True
    await session.flush()
    return existing
