"""Accounts: registration, sign-in, sessions, profiles, and user administration."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import strawberry

from app import validation
from app.broker import Message
from app.events import user_channel
from app.user import auth
from app.user import service as user_service
from resolvers.feeds import follow
from schema.context import Info
from schema.pagination import Connection
from schema.permissions import IsAdmin, IsAuthenticated
from schema.scalars import parse_id
from schema.user import (
    AuthPayload,
    ChangePasswordInput,
    RegisterInput,
    Role,
    UpdateProfileInput,
    UserType,
)


@strawberry.type
class UserQuery:
    @strawberry.field(permission_classes=[IsAuthenticated], description="The signed-in user.")
    def me(self, info: Info) -> UserType:
        return UserType.from_model(info.context.require_user())

    @strawberry.field(permission_classes=[IsAdmin], description="Every account, oldest first.")
    async def users(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> Connection[UserType]:
        async with info.context.read() as session:
            page = await user_service.list_users(session, first=first, after=after)
        return Connection[UserType].from_page(page, UserType.from_model)


@strawberry.type
class UserMutation:
    @strawberry.mutation(description="Create an account; sign in with `login` afterwards.")
    async def register(self, info: Info, input: RegisterInput) -> UserType:
        async with info.context.unit_of_work() as session:
            user = await user_service.register(
                session, email=input.email, password=input.password, display_name=input.display_name
            )
        return UserType.from_model(user)

    @strawberry.mutation
    async def login(self, info: Info, email: str, password: str) -> AuthPayload:
        ctx = info.context
        # Bounded before the rate limiter keys on the email and Argon2 hashes the password.
        validation.check_length(email, field="email", maximum=validation.EMAIL)
        validation.check_length(password, field="password", maximum=user_service.MAX_PASSWORD)
        async with ctx.read() as session:
            user = await auth.check_credentials(
                session,
                ctx.settings,
                ctx.limiter,
                email=email,
                password=password,
                address=ctx.client_address,
            )
        async with ctx.unit_of_work() as session:
            pair = await auth.login(session, ctx.settings, user_id=user.id)
        return AuthPayload.from_pair(pair)

    @strawberry.mutation(description="Spend a refresh token for a new pair; each works once.")
    async def refresh_token(self, info: Info, refresh_token: str) -> AuthPayload:
        validation.check_length(refresh_token, field="refreshToken", maximum=validation.TOKEN)
        async with info.context.unit_of_work() as session:
            pair = await auth.refresh(session, info.context.settings, token=refresh_token)
        return AuthPayload.from_pair(pair)

    @strawberry.mutation(description="End the login session the refresh token belongs to.")
    async def logout(self, info: Info, refresh_token: str) -> bool:
        validation.check_length(refresh_token, field="refreshToken", maximum=validation.TOKEN)
        async with info.context.unit_of_work() as session:
            return await auth.logout(session, token=refresh_token)

    @strawberry.mutation(permission_classes=[IsAuthenticated])
    async def update_profile(self, info: Info, input: UpdateProfileInput) -> UserType:
        async with info.context.unit_of_work() as session:
            user = await user_service.update_profile(
                session, user_id=info.context.user_id, display_name=input.display_name
            )
        return UserType.from_model(user)

    @strawberry.mutation(
        permission_classes=[IsAuthenticated],
        description="Set a new password; every other login session is signed out.",
    )
    async def change_password(self, info: Info, input: ChangePasswordInput) -> UserType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            user = await user_service.change_password(
                session,
                user_id=ctx.user_id,
                current_password=input.current_password,
                new_password=input.new_password,
                keep_session=ctx.claims.session_id if ctx.claims else None,
            )
        return UserType.from_model(user)

    @strawberry.mutation(permission_classes=[IsAdmin])
    async def set_user_role(self, info: Info, id: strawberry.ID, role: Role) -> UserType:
        async with info.context.unit_of_work() as session:
            user = await user_service.set_role(
                session, actor_id=info.context.user_id, user_id=parse_id(id), role=role
            )
        return UserType.from_model(user)

    @strawberry.mutation(
        permission_classes=[IsAdmin],
        description=(
            "Deactivate an account: its tokens stop working and its open connections close at "
            "once, its running and paused bots stop and its open orders are cancelled."
        ),
    )
    async def deactivate_user(self, info: Info, id: strawberry.ID) -> UserType:
        ctx = info.context
        async with ctx.unit_of_work() as session:
            user = await user_service.deactivate(
                session, ctx.settings, actor_id=ctx.user_id, user_id=parse_id(id)
            )
        return UserType.from_model(user)


@strawberry.type
class UserSubscription:
    @strawberry.subscription(
        permission_classes=[IsAuthenticated],
        description="The signed-in user, each time the account changes (profile, role, status).",
    )
    async def account_updates(self, info: Info) -> AsyncGenerator[UserType, None]:
        ctx = info.context
        user_id = ctx.user_id

        async def decode(_: Message) -> UserType:
            async with ctx.read() as session:
                return UserType.from_model(await user_service.get(session, user_id=user_id))

        return follow(info, user_channel(user_id, "account"), decode)
