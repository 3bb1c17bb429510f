"""A small GraphQL-over-HTTP client for the end-to-end tests, and the accounts they make."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

PASSWORD = "correct-horse-battery"
REGISTER = """
mutation Register($input: RegisterInput!) {
  register(input: $input) { id email displayName role isActive }
}
"""
LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    accessToken refreshToken tokenType user { id email role }
  }
}
"""
REFRESH = """
mutation Refresh($token: String!) {
  refreshToken(refreshToken: $token) { accessToken refreshToken user { id } }
}
"""
ME = "query Me { me { id email displayName role isActive } }"
LOGOUT = "mutation Logout($token: String!) { logout(refreshToken: $token) }"
CHANGE_PASSWORD = """
mutation ChangePassword($current: String!, $new: String!) {
  changePassword(input: {currentPassword: $current, newPassword: $new}) { id }
}
"""
UPDATE_PROFILE = """
mutation UpdateProfile($name: String!) {
  updateProfile(input: {displayName: $name}) { id displayName }
}
"""

_addresses = itertools.count(1)

JSON = dict[str, Any]


def new_email() -> str:
    return f"trader-{uuid.uuid4().hex[:12]}@example.com"


def new_address() -> str:
    """A client address of its own, so per-address rate limits of one test spare the others."""
    n = next(_addresses)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


@dataclass(frozen=True, slots=True)
class Account:
    id: str
    email: str
    password: str


@dataclass(frozen=True, slots=True)
class Tokens:
    access: str
    refresh: str


def assert_clean(response: httpx.Response) -> None:
    assert "Traceback" not in response.text, response.text
    assert response.status_code < 500, f"{response.status_code}: {response.text}"


class GraphQLClient:
    """Posts documents to /graphql the way a bot would; the test servers trust X-Forwarded-For
    from 127.0.0.1 (TG_TRUSTED_PROXIES), so each client appears to come from an address of its
    own."""

    def __init__(self, http: httpx.AsyncClient, *, address: str | None = None) -> None:
        self.http = http
        self.address = address or new_address()

    async def post(
        self,
        query: str,
        variables: JSON | None = None,
        *,
        token: str | None = None,
        address: str | None = None,
    ) -> httpx.Response:
        headers = {"X-Forwarded-For": address or self.address}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body: JSON = {"query": query, "variables": variables or {}}
        response = await self.http.post("/graphql", json=body, headers=headers)
        assert_clean(response)
        return response

    async def execute(
        self,
        query: str,
        variables: JSON | None = None,
        *,
        token: str | None = None,
        address: str | None = None,
    ) -> JSON:
        response = await self.post(query, variables, token=token, address=address)
        assert response.status_code == 200, response.text
        result: JSON = response.json()
        return result

    async def data(self, query: str, variables: JSON | None = None, **kw: Any) -> JSON:
        result = await self.execute(query, variables, **kw)
        assert "errors" not in result, result
        data: JSON = result["data"]
        return data

    async def error(self, query: str, variables: JSON | None = None, **kw: Any) -> JSON:
        """The one error the document must produce."""
        result = await self.execute(query, variables, **kw)
        assert len(result.get("errors") or []) == 1, result
        error: JSON = result["errors"][0]
        return error

    async def register(
        self, email: str | None = None, *, password: str = PASSWORD, name: str = "Trader"
    ) -> Account:
        email = email or new_email()
        variables = {"input": {"email": email, "password": password, "displayName": name}}
        user = (await self.data(REGISTER, variables))["register"]
        return Account(id=user["id"], email=user["email"], password=password)

    async def login(self, account: Account, *, password: str | None = None) -> Tokens:
        variables = {"email": account.email, "password": password or account.password}
        payload = (await self.data(LOGIN, variables))["login"]
        assert payload["tokenType"] == "Bearer"
        assert payload["user"]["id"] == account.id
        return Tokens(access=payload["accessToken"], refresh=payload["refreshToken"])

    async def refresh(self, refresh_token: str) -> JSON:
        return await self.execute(REFRESH, {"token": refresh_token})

    async def me(self, token: str) -> JSON:
        return await self.execute(ME, token=token)

    async def signed_up(self, *, name: str = "Trader") -> tuple[Account, Tokens]:
        account = await self.register(name=name)
        return account, await self.login(account)


def error_code(result: JSON) -> str | None:
    errors = result.get("errors") or []
    return errors[0].get("extensions", {}).get("code") if errors else None
