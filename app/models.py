"""Every model, imported once so the metadata is complete (Alembic and the tests read it)."""

from __future__ import annotations

from app.db import Base
from app.user.models import RefreshToken, User

metadata = Base.metadata

__all__ = ["RefreshToken", "User", "metadata"]
