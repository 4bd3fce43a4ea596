"""Server-side sessions: the cookie only names one; the row, and its user's state now, decide
whether it is alive.

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
from gateway.store import SessionRecord, SignedIn, StoreError, Stores, User

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
    user: User


def binding_for(bind: str, client: str, user_agent: str) -> str:
    """What a session is bound to ([session] bind), as a short hash: "" when unbound."""
    if bind == "user_agent":
        return hashlib.sha256(b"ua\0" + user_agent.encode("utf-8", "replace")).hexdigest()[:32]
    if bind == "client":
        return hashlib.sha256(b"client\0" + client.encode()).hexdigest()[:32]
    return ""


def end_reason(record: SessionRecord, user: User, settings: SessionSettings, now: float, binding: str) -> str | None:
    """Why a session found in the store is no longer alive, or None while it is (pure)."""
    if user.disabled:
        return "user disabled"
    if record.auth_time < user.password_changed_at:
        return "password changed"
    if now - record.created_at > settings.absolute_timeout:
        return "absolute timeout"
    if now - record.last_seen > settings.idle_timeout:
        return "idle timeout"
    if record.binding and record.binding != binding:
        return "binding mismatch"
    return None


def is_alive(signed_in: SignedIn, settings: SessionSettings, now: float) -> bool:
    """For listings: not disabled, within the idle and absolute limits (binding is per request)."""
    record = signed_in.session
    return end_reason(record, signed_in.user, settings, now, record.binding) is None


class SessionManager:
    def __init__(
        self, stores: Stores, settings: SessionSettings, audit: Audit | None = None, clock: Clock = time.time
    ) -> None:
        self._stores = stores
        self._store = stores.sessions
        self._settings = settings
        self._audit = audit
        self._clock = clock
        # The serving gateway starts and stops its writer task (create_app); without it, flush().
        self.idle_clock = IdleClock(stores.sessions, remember_for=settings.idle_timeout,
                                    on_stored=stores.cache.touched)

    async def start(self, user: User, client: str, user_agent: str, *, persistent: bool = False,
                    mfa: str = "") -> str:
        """Create a session for ``user`` and return its id (only ever written into the cookie).
        ``mfa``: the second factor kind passed before it was made ("" for none)."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        await self._store.create_session(
            hash_session_id(session_id), user.id, self._clock(), client, printable(user_agent[:256]),
            persistent=persistent, binding=binding_for(self._settings.bind, client, user_agent), mfa=mfa,
        )
        return session_id

    async def resolve(self, session_id: str | None, *, client: str = "", user_agent: str = "") -> ActiveSession | None:
        """The live session ``session_id`` names, or None. Only reading the session may raise (the
        store cannot be read: the caller answers 503); every write here is best effort."""
        if not session_id or len(session_id) > 64 or not _ID_CHARS.issuperset(session_id):
            return None
        id_hash = hash_session_id(session_id)
        found = await self._stores.cache.lookup(id_hash)
        if found is None:
            return None
        record, user = found.session, found.user
        seen = self.idle_clock.seen(id_hash)
        if seen is not None and seen > record.last_seen:
            # A refresh noted here and not stored yet (or read just before it was): it counts.
            record = replace(record, last_seen=seen)
        now = self._clock()
        reason = end_reason(record, user, self._settings, now, binding_for(self._settings.bind, client, user_agent))
        if reason is not None:
            await self._expire(record, user, client, reason)
            return None
        if now - record.last_seen >= touch_interval(self._settings.idle_timeout):
            self.idle_clock.note(id_hash, now)
        principal = Principal(user=user.name, roles=frozenset(user.roles), auth_time=record.auth_time)
        return ActiveSession(id_hash=id_hash, principal=principal, record=record, user=user)

    async def _expire(self, record: SessionRecord, user: User, client: str, reason: str) -> None:
        """Delete a session found dead. The request is refused whether or not the delete succeeds:
        a row left behind is dead all the same, and is deleted when next used or at start."""
        try:
            deleted = await self._store.delete_session(record.id_hash)
        except StoreError as exc:
            log.warning("ended session %s not deleted yet: %s", short_id(record.id_hash), type(exc).__name__)
            return
        if deleted and self._audit is not None:
            self._audit.record("session.expired", user=user.name, client=client,
                               session=short_id(record.id_hash), reason=reason)

    async def _with_users(self, records: list[SessionRecord]) -> tuple[list[SignedIn], list[SessionRecord]]:
        """Sessions with their users, ordered by user name then creation; and the sessions whose
        user is gone (dead: their user was deleted)."""
        users = {user.id: user for user in await self._stores.users.list_users()}
        known = [SignedIn(r, users[r.user_id]) for r in records if r.user_id in users]
        known.sort(key=lambda s: (s.user.name.lower(), s.session.created_at, s.session.id_hash))
        return known, [r for r in records if r.user_id not in users]

    async def live_sessions(self, user_id: int | None = None) -> list[SignedIn]:
        """Sessions that would still be accepted, with their users; expired rows are not shown
        (they die when next used)."""
        now = self._clock()
        known, _ = await self._with_users(await self._store.list_sessions(user_id))
        return [s for s in known if is_alive(s, self._settings, now)]

    async def count_live(self) -> int:
        """How many sessions of enabled users would still be accepted (binding aside), for the
        metrics gauge: a count per user from the session store, users from the user store."""
        now = self._clock()
        counts = await self._store.count_sessions(created_after=now - self._settings.absolute_timeout,
                                                  seen_after=now - self._settings.idle_timeout)
        if not counts:
            return 0
        enabled = {user.id for user in await self._stores.users.list_users() if not user.disabled}
        return sum(n for user_id, n in counts.items() if user_id in enabled)

    async def purge_expired(self) -> int:
        """Delete rows past their limits, or whose user is gone (at start): a quiet gateway
        otherwise keeps them until used."""
        now = self._clock()
        known, orphans = await self._with_users(await self._store.list_sessions())
        dead = [s.session for s in known if not is_alive(s, self._settings, now)] + orphans
        for record in dead:
            await self._store.delete_session(record.id_hash)
        return len(dead)

    async def complete_factor(self, session_id: str, mfa: str, client: str, user_agent: str) -> str | None:
        """The second factor was passed on a live session: a new session with ``mfa`` set replaces
        it, and its id is returned (the id changes whenever a session gains privilege, so an id
        planted or seen before never carries the factor). None when the old one is not alive."""
        active = await self.resolve(session_id, client=client, user_agent=user_agent)
        if active is None:
            return None
        new_id = await self.start(active.user, client, user_agent, persistent=active.record.persistent, mfa=mfa)
        await self._store.delete_session(active.id_hash)
        return new_id

    async def end(self, session_id: str) -> bool:
        return await self._store.delete_session(hash_session_id(session_id))
