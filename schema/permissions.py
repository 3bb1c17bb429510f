"""Field permissions; they raise domain errors so the formatter gives them their codes."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission

from app.errors import Forbidden
from app.user.models import Role
from schema.context import Info


class IsAuthenticated(BasePermission):
    message = "sign in to use this field"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        info.context.require_user()
        return True


class IsAdmin(BasePermission):
    message = "admins only"

    def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        if info.context.require_user().role is not Role.ADMIN:
            raise Forbidden("admins only")
        return True
