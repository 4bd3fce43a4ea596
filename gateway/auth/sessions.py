"""Server-side sessions: the cookie only names one; the row decides whether it is alive.

Session ids are 256 random bits. The store keeps only their SHA-256, logs show only a short prefix
of that hash, so neither a database copy nor a log line can be replayed as a cookie.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from gateway.auth.idle_clock import IdleClock
from gateway.config import SessionSettings
from gateway.policy import Principal
from gateway.store.base import SessionRecord, SessionStore, User

if TYPE_CHECKING:
    from gateway.observe.audit import Audit

log = logging.getLogger("gateway.sessions")

SESSION_ID_BYTES = 32
TOUCH_INTERVAL = 60.0  # last_seen is written at most once a minute per session, not per request


def touch_interval(idle_timeout: int) -> float:
    """How stale last_seen may get: a minute, or a quarter of a short idle timeout so that an active
    session is never taken for an idle one (a 5 s timeout with a 60 s granularity would end every
    session 5 s after sign-in)."""
    return min(TOUCH_INTERVAL, idle_timeout / 4)


def printable(text: str) -> str:
    """Control characters (terminal escapes, bidi controls) replaced: stored values are shown to
    operators in terminals and to users in pages."""
    return "".join(c if c.isprintable() else "\ufffd" for c in text)
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

Clock = Callable[[], float]


def hash_session_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def short_id(id_hash: str) -> str:
    """What logs and listings show: enough to tell sessions apart, useless as a cookie."""
    return id_hash[:12]


@dataclass(frozen=True, slots=True)
class ActiveSession:
    id_hash: str
    principal: Principal
    record: SessionRecord


def binding_for(bind: str, client: str, user_agent: str) -> str:
    """What a session is bound to ([session] bind), as a short hash: "" when unbound."""
    if bind == "user_agent":
        return hashlib.sha256(b"ua\0" + user_agent.encode("utf-8", "replace")).hexdigest()[:32]
    if bind == "client":
        return hashlib.sha256(b"client\0" + client.encode()).hexdigest()[:32]
    return ""


def end_reason(record: SessionRecord, settings: SessionSettings, now: float, binding: str) -> str | None:
    """Why a session found in the store is no longer alive, or None while it is (pure)."""
    if record.user_disabled:
        return "user disabled"
    if now - record.created_at > settings.absolute_timeout:
        return "absolute timeout"
    if now - record.last_seen > settings.idle_timeout:
        return "idle timeout"
    if record.binding and record.binding != binding:
        return "binding mismatch"
    return None


def is_alive(record: SessionRecord, settings: SessionSettings, now: float) -> bool:
    """For listings: not disabled, within the idle and absolute limits (binding is per request)."""
    return end_reason(record, settings, now, record.binding) is None


class SessionManager:
    def __init__(
        self, store: SessionStore, settings: SessionSettings, audit: Audit | None = None, clock: Clock = time.time
    ) -> None:
        self._store = store
        self._settings = settings
        self._audit = audit
        self._clock = clock
        # The serving gateway starts and stops its writer task (create_app); without it, flush().
        self.idle_clock = IdleClock(store, remember_for=settings.idle_timeout)

    async def start(self, user: User, client: str, user_agent: str, *, persistent: bool = False) -> str:
        """Create a session for ``user`` and return its id (only ever written into the cookie)."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        await self._store.create_session(
            hash_session_id(session_id), user.id, self._clock(), client, printable(user_agent[:256]),
            persistent=persistent, binding=binding_for(self._settings.bind, client, user_agent),
        )
        return session_id

    async def resolve(self, session_id: str | None, *, client: str = "", user_agent: str = "") -> ActiveSession | None:
        """The live session ``session_id`` names, or None. Only reading the session may raise (the
        store cannot be read: the caller answers 503); every write here is best effort."""
        if not session_id or len(session_id) > 64 or not _ID_CHARS.issuperset(session_id):
            return None
        id_hash = hash_session_id(session_id)
        record = await self._store.get_session(id_hash)
        if record is None:
            return None
        seen = self.idle_clock.seen(id_hash)
        if seen is not None and seen > record.last_seen:
            # A refresh noted here and not stored yet (or read just before it was): it counts.
            record = replace(record, last_seen=seen)
        now = self._clock()
        reason = end_reason(record, self._settings, now, binding_for(self._settings.bind, client, user_agent))
        if reason is not None:
            await self._expire(record, client, reason)
            return None
        if now - record.last_seen >= touch_interval(self._settings.idle_timeout):
            self.idle_clock.note(id_hash, now)
        principal = Principal(user=record.user_name, roles=frozenset(record.roles), auth_time=record.auth_time)
        return ActiveSession(id_hash=id_hash, principal=principal, record=record)

    async def _expire(self, record: SessionRecord, client: str, reason: str) -> None:
        """Delete a session found dead. The request is refused whether or not the delete succeeds:
        a row left behind is dead all the same, and is deleted when next used or at start."""
        try:
            deleted = await self._store.delete_session(record.id_hash)
        except Exception as exc:
            log.warning("ended session %s not deleted yet: %s", short_id(record.id_hash), type(exc).__name__)
            return
        if deleted and self._audit is not None:
            self._audit.record("session.expired", user=record.user_name, client=client,
                               session=short_id(record.id_hash), reason=reason)

    async def live_sessions(self, user_id: int | None = None) -> list[SessionRecord]:
        """Sessions that would still be accepted; expired rows are not shown (they die when next used)."""
        now = self._clock()
        return [r for r in await self._store.list_sessions(user_id) if is_alive(r, self._settings, now)]

    async def count_live(self) -> int:
        """How many sessions would still be accepted (binding aside): a COUNT, for the metrics gauge."""
        now = self._clock()
        return await self._store.count_sessions(created_after=now - self._settings.absolute_timeout,
                                                seen_after=now - self._settings.idle_timeout)

    async def purge_expired(self) -> int:
        """Delete rows past their limits (at start): a quiet gateway otherwise keeps them until used."""
        now = self._clock()
        dead = [r for r in await self._store.list_sessions() if not is_alive(r, self._settings, now)]
        for record in dead:
            await self._store.delete_session(record.id_hash)
        return len(dead)

    async def end(self, session_id: str) -> bool:
        return await self._store.delete_session(hash_session_id(session_id))
