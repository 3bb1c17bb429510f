from __future__ import annotations

import asyncio
from datetime import timedelta

import jwt
import pytest

from app import security
from app.db import utcnow
from app.errors import Unauthenticated
from tests.conftest import test_settings


def test_access_token_round_trip() -> None:
    settings = test_settings()
    token = security.create_access_token(settings, user_id=7, role="admin", session_id="s1")
    claims = security.decode_access_token(settings, token)
    assert (claims.user_id, claims.role, claims.session_id) == (7, "admin", "s1")
    assert claims.expires_at > utcnow()


def test_expired_token_is_refused() -> None:
    settings = test_settings(access_token_minutes=1)
    issued = utcnow() - timedelta(minutes=5)
    token = security.create_access_token(
        settings, user_id=1, role="user", session_id="s", now=issued
    )
    with pytest.raises(Unauthenticated, match="expired"):
        security.decode_access_token(settings, token)


@pytest.mark.parametrize(
    "token",
    [
        "not-a-jwt",
        jwt.encode(
            {"sub": "1", "sid": "s", "iat": 0, "exp": 4102444800},
            "another-secret-key-that-is-long-enough-for-hs256",
        ),
        jwt.encode(
            {"sub": "1", "sid": "s", "iat": 0, "exp": 4102444800, "typ": "refresh"},
            test_settings().secret_key.get_secret_value(),
        ),
    ],
)
def test_forged_or_foreign_tokens_are_refused(token: str) -> None:
    with pytest.raises(Unauthenticated):
        security.decode_access_token(test_settings(), token)


def test_passwords_verify_only_against_their_hash() -> None:
    digest = security.hash_password("a long password")
    assert security.verify_password(digest, "a long password")
    assert not security.verify_password(digest, "another password")
    assert not security.verify_password(None, "a long password")
    assert not security.verify_password("not-a-hash", "a long password")


async def test_a_verified_token_still_expires() -> None:
    settings = test_settings(access_token_minutes=1)
    # Issued so that it expires at the next whole second: verified now, expired a moment later.
    expiry = utcnow().replace(microsecond=0) + timedelta(seconds=1)
    token = security.create_access_token(
        settings, user_id=3, role="user", session_id="s", now=expiry - timedelta(minutes=1)
    )
    assert security.decode_access_token(settings, token).user_id == 3
    await asyncio.sleep((expiry - utcnow()).total_seconds() + 0.05)
    with pytest.raises(Unauthenticated, match="expired"):
        security.decode_access_token(settings, token)


def test_a_token_verified_under_one_key_is_not_trusted_under_another() -> None:
    signer = test_settings()
    token = security.create_access_token(signer, user_id=4, role="user", session_id="s")
    assert security.decode_access_token(signer, token).user_id == 4
    other = test_settings(secret_key="another secret key that is long enough to pass checks")
    with pytest.raises(Unauthenticated, match="invalid"):
        security.decode_access_token(other, token)
