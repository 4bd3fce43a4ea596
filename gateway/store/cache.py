"""The session cache: sessions and their users answered from memory, over any pair of stores.

The proxied hot path needs no store round trip while nothing changed. Correctness comes first: a
cached row may be served only while nothing could have changed it.
- The change feed's mark (store/base.py ``ChangeFeed``) moves after every committed change to
  users or sessions, by any process sharing the stores. Every lookup reads it first; when it moved,
  everything cached is dropped. A row read while the mark said M is kept only if the mark still
  says M, so a lookup that raced a write cannot put its older row back.
- A feed that cannot vouch (mark None) means no caching at all.
- Whatever happens to the feed, no entry is served once it is ``ttl`` seconds old (the last-resort
  bound: the contract's is one second).

``RowCache`` is the pure data structure (the caller passes the mark and the monotonic time in);
``SessionCache`` wraps a session store and a user store with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

from gateway.store.base import ChangeFeed, SessionRecord, SessionStore, User, UserStore

__all__ = ["DEFAULT_MAX_ENTRIES", "DEFAULT_TTL", "RowCache", "SessionCache", "SignedIn"]

DEFAULT_TTL = 0.75  # seconds; the contract requires changes to reach a running gateway within 1 s
DEFAULT_MAX_ENTRIES = 50_000  # ~ a few hundred bytes each; evicted oldest first

K = TypeVar("K")
V = TypeVar("V")


class RowCache(Generic[K, V]):
    def __init__(self, ttl: float = DEFAULT_TTL, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.ttl = ttl
        self._max = max_entries
        # key -> (row or None for "no such row", monotonic time it was read)
        self._entries: dict[K, tuple[V | None, float]] = {}
        self._mark: int | None = None

    def sync(self, mark: int | None) -> None:
        """The feed's mark now: when it moved (or cannot vouch), nothing cached may be served."""
        if mark != self._mark or mark is None:
            self._entries.clear()
            self._mark = mark

    def get(self, key: K, now: float) -> tuple[bool, V | None]:
        """(hit, row). A hit with None means the store said "no such row" moments ago."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if now - entry[1] >= self.ttl:
            del self._entries[key]
            return False, None
        return True, entry[0]

    def put(self, key: K, row: V | None, mark: int | None, read_at: float) -> None:
        """Remember a row read at ``read_at``, after the feed said ``mark``, if it still says so."""
        if mark is None or mark != self._mark:
            return  # a write raced the read: the row may already be stale
        if len(self._entries) >= self._max:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = (row, read_at)

    def update(self, key: K, change: Callable[[V], V | None]) -> None:
        """Change a cached row in place (its read time stays): our own write that no other process
        needs to hear of."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] is not None:
            self._entries[key] = (change(entry[0]), entry[1])

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A session and its user's state now (the user may be disabled: the caller judges)."""

    session: SessionRecord
    user: User


def _newer_last_seen(last_seen: float) -> Callable[[SessionRecord], SessionRecord]:
    def change(record: SessionRecord) -> SessionRecord:
        return replace(record, last_seen=last_seen) if last_seen > record.last_seen else record

    return change


class SessionCache:
    """``lookup(id_hash)``: the session and its user, from memory while the feed says nothing
    changed. With ``ttl`` 0 every lookup asks the stores (the CLI, tests)."""

    def __init__(self, sessions: SessionStore, users: UserStore, feed: ChangeFeed, *, ttl: float = 0.0,
                 max_entries: int = DEFAULT_MAX_ENTRIES, clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions = sessions
        self._users = users
        self._feed = feed
        self._clock = clock
        self.enabled = ttl > 0
        self.ttl = ttl
        self._session_rows: RowCache[str, SessionRecord] = RowCache(ttl, max_entries)
        self._user_rows: RowCache[int, User] = RowCache(ttl, max_entries)

    async def lookup(self, id_hash: str) -> SignedIn | None:
        """The session ``id_hash`` names and its user; None when either is gone. Raises StoreError."""
        session = await self.session(id_hash)
        if session is None:
            return None
        user = await self.user(session.user_id)
        return SignedIn(session, user) if user is not None else None

    async def session(self, id_hash: str) -> SessionRecord | None:
        if not self.enabled:
            return await self._sessions.get_session(id_hash)
        mark, now = self._sync()
        hit, record = self._session_rows.get(id_hash, now)
        if hit:
            return record
        record = await self._sessions.get_session(id_hash)
        self._session_rows.put(id_hash, record, mark, now)
        return record

    async def user(self, user_id: int) -> User | None:
        if not self.enabled:
            return await self._users.get_user_by_id(user_id)
        mark, now = self._sync()
        hit, user = self._user_rows.get(user_id, now)
        if hit:
            return user
        user = await self._users.get_user_by_id(user_id)
        self._user_rows.put(user_id, user, mark, now)
        return user

    def _sync(self) -> tuple[int | None, float]:
        mark = self._feed.mark()
        self._session_rows.sync(mark)
        self._user_rows.sync(mark)
        return mark, self._clock()

    def touched(self, seen: Mapping[str, float]) -> None:
        """Idle-clock refreshes this process stored: keep cached rows in step without dropping them
        (the store keeps the newer time, and so does the cache)."""
        for id_hash, last_seen in seen.items():
            self._session_rows.update(id_hash, _newer_last_seen(last_seen))

    def __len__(self) -> int:
        return len(self._session_rows) + len(self._user_rows)
