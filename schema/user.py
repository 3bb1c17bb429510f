from __future__ import annotations

from datetime import datetime

import strawberry

from app.user.auth import TokenPair
from app.user.models import Role as RoleModel
from app.user.models import User

strawberry.enum(RoleModel, name="Role", description="What an account may do")
Role = RoleModel


@strawberry.type(name="User")
class UserType:
    id: strawberry.ID
    email: str
    display_name: str
    role: Role
    is_active: bool
    created_at: datetime

    @classmethod
    def from_model(cls, user: User) -> UserType:
        return cls(
            id=strawberry.ID(str(user.id)),
            email=user.email,
            display_name=user.display_name,
            role=user.role,
            is_active=user.is_active,
            created_at=user.created_at,
        )


@strawberry.type
class AuthPayload:
    access_token: str
    refresh_token: str
    token_type: str
    user: UserType

    @classmethod
    def from_pair(cls, pair: TokenPair) -> AuthPayload:
        return cls(
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            token_type="Bearer",
            user=UserType.from_model(pair.user),
        )


@strawberry.input
class RegisterInput:
    email: str
    password: str
    display_name: str


@strawberry.input
class UpdateProfileInput:
    display_name: str


@strawberry.input
class ChangePasswordInput:
    current_password: str
    new_password: str
