"""Quart-Auth glue for the gateway's pages: the cookie codec and a user class backed by the session table.

Quart-Auth's ``resolve_user`` is synchronous, so the database work happens in the async
``is_authenticated`` property, once per request (the result is kept on the instance).
"""

from __future__ import annotations

from typing import Any

from quart import Quart, request
from quart_auth import Action, AuthUser, QuartAuth

from gateway.auth.cookie import SALT
from gateway.auth.sessions import ActiveSession
from gateway.observe import Exchange
from gateway.services import current_services

__all__ = ["GatewayAuth", "GatewayUser", "auth_config", "note_user", "request_client"]


def note_user(name: str) -> None:
    """Names the signed-in user in the request's access-log line (observe/access.py)."""
    exchange = request.scope.get("gateway.exchange")  # asgi.EXCHANGE_KEY; absent in bare Quart tests
    if isinstance(exchange, Exchange):
        exchange.user = name


def request_client() -> str:
    """The real client of the current Quart request: the peer, or the address behind trusted proxies."""
    return current_services().proxies.client_of(request.scope)


class GatewayUser(AuthUser):
    def __init__(self, auth_id: str | None, action: Action = Action.PASS) -> None:
        super().__init__(auth_id, action)
        self._resolved = False
        self._session: ActiveSession | None = None

    async def session(self) -> ActiveSession | None:
        if not self._resolved:
            if self.auth_id:
                self._session = await current_services().sessions.resolve(
                    self.auth_id, client=request_client(), user_agent=request.headers.get("User-Agent", "")
                )
                if self._session is not None:
                    note_user(self._session.principal.user)
            self._resolved = True
        return self._session

    @property
    async def is_authenticated(self) -> bool:
        return await self.session() is not None


class GatewayAuth(QuartAuth):
    """Quart-Auth, reading and writing tokens through the same codec the proxy path uses."""

    user_class = GatewayUser

    def load_token(self, token: str, app: Quart | None = None) -> str | None:
        return current_services().cookie.load(token)

    def dump_token(self, auth_id: str, app: Quart | None = None) -> str:
        return current_services().cookie.dump(auth_id)


def auth_config(cookie_name: str, secure: bool, max_age: int) -> dict[str, Any]:
    return {
        "QUART_AUTH_COOKIE_NAME": cookie_name,
        "QUART_AUTH_COOKIE_SECURE": secure,
        "QUART_AUTH_COOKIE_HTTP_ONLY": True,
        "QUART_AUTH_COOKIE_SAMESITE": "Lax",
        "QUART_AUTH_COOKIE_PATH": "/",
        "QUART_AUTH_COOKIE_DOMAIN": None,
        "QUART_AUTH_DURATION": max_age,
        "QUART_AUTH_SALT": SALT,
        "QUART_AUTH_MODE": "cookie",
    }
