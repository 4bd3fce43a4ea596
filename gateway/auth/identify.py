"""Identify: which live session, if any, a request's cookie names (credential -> principal).

Every way in identifies a request here, with the same cookie codec Quart-Auth uses on the gateway's
own pages, so all of them agree on what a valid cookie is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.auth.cookie import SessionCookie, cookie_value
from gateway.auth.sessions import ActiveSession, SessionManager
from gateway.errors import ServiceUnavailable
from gateway.http import RawHeaders, first_value
from gateway.policy import Principal
from gateway.store import StoreError

__all__ = ["Identifier", "Identity"]

log = logging.getLogger("gateway.proxy")


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a request is: its live session (None: anonymous), the session id its cookie named (for
    re-checks), and whether it sent the gateway's cookie at all (a dead one is cleared)."""

    session: ActiveSession | None
    session_id: str | None
    had_cookie: bool

    @property
    def principal(self) -> Principal | None:
        return self.session.principal if self.session is not None else None


ANONYMOUS = Identity(None, None, False)


class Identifier:
    def __init__(self, cookie: SessionCookie, sessions: SessionManager) -> None:
        self.cookie = cookie
        self.sessions = sessions

    async def identify(self, headers: RawHeaders, client: str) -> Identity:
        """The live session named by the cookie; 503 when the store cannot say (fail closed, never guess)."""
        token = cookie_value(first_value(headers, b"cookie"), self.cookie.name)
        if token is None:
            return ANONYMOUS
        session_id = self.cookie.load(token)
        if session_id is None:
            return Identity(None, None, True)
        user_agent = (first_value(headers, b"user-agent") or b"").decode("latin-1")
        try:
            active = await self.sessions.resolve(session_id, client=client, user_agent=user_agent)
        except StoreError as exc:
            log.error("session lookup failed: %s", type(exc).__name__)
            raise ServiceUnavailable("The session store is unavailable.") from exc
        return Identity(active, session_id if active is not None else None, True)

    async def still_signed_in(self, session_id: str | None, *, client: str, user_agent: str) -> Principal | None:
        """The principal of ``session_id`` now (None: ended or anonymous). Raises when the store fails."""
        if session_id is None:
            return None
        active = await self.sessions.resolve(session_id, client=client, user_agent=user_agent)
        return active.principal if active is not None else None
