"""Stores opened from URLs: ``open_store(url)`` for one backend, ``open_stores(settings)`` for what
a gateway process (or a command) uses, gathered in ``Stores`` with the session cache over them.

``[store] users`` and ``[store] sessions`` are URLs; only ``sqlite:///PATH`` exists in this
release (PostgreSQL users and Redis sessions come next). With neither set, ``[store] path`` is both
(one SQLite file): the settings turn it into the two URLs. Two URLs naming one file open it once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from gateway.store.base import (
    AuditStore,
    ChangeFeed,
    SessionBackend,
    SessionStore,
    StoreError,
    ThrottleStore,
    UserBackend,
    UserStore,
)
from gateway.store.cache import SessionCache
from gateway.store.feed import CombinedFeed
from gateway.store.sqlite import SqliteStore

__all__ = ["StoreUrls", "Stores", "open_store", "open_stores", "sqlite_url"]

SQLITE = "sqlite:///"
LATER = ("postgresql://", "postgres://", "redis://", "rediss://")


class StoreUrls(Protocol):
    """What ``open_stores`` reads from the settings (config's StoreSettings)."""

    @property
    def users(self) -> str: ...
    @property
    def sessions(self) -> str: ...


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite file (``sqlite:////abs/path`` for an absolute one)."""
    return SQLITE + str(path)


def open_store(url: str) -> SqliteStore:
    """The backend ``url`` names, not connected yet (``await store.open()``). Raises StoreError
    with one line for a URL this release cannot open."""
    if url.startswith(SQLITE) and len(url) > len(SQLITE):
        return SqliteStore(Path(url[len(SQLITE):]))
    scheme = url.split(":", 1)[0] if ":" in url else url
    if url.startswith(LATER):
        raise StoreError(f"{scheme}:// stores are not available yet in this release (sqlite:///PATH only)")
    raise StoreError(f"{url!r}: not a store URL (sqlite:///PATH)")


class Stores:
    """The stores one process uses: users (and the audit trail) and sessions (and the throttle
    counters), each possibly another backend, and the session cache over them."""

    def __init__(self, users: UserBackend, sessions: SessionBackend, *, cache_ttl: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.users: UserStore = users
        self.audit: AuditStore = users
        self.sessions: SessionStore = sessions
        self.throttle: ThrottleStore = sessions
        backends: list[UserBackend | SessionBackend] = [users]
        if sessions is not users:  # type: ignore[comparison-overlap]  # one SQLite file serves both
            backends.append(sessions)
        self._backends = tuple(backends)
        feeds = [backend.feed for backend in self._backends]
        self.feed: ChangeFeed = feeds[0] if len(feeds) == 1 else CombinedFeed(feeds)
        self.cache = SessionCache(sessions, users, self.feed, ttl=cache_ttl, clock=clock)

    async def open(self) -> None:
        opened: list[UserBackend | SessionBackend] = []
        try:
            for backend in self._backends:
                await backend.open()
                opened.append(backend)
        except BaseException:
            for backend in opened:
                await backend.close()
            raise

    async def close(self) -> None:
        for backend in self._backends:
            await backend.close()

    async def ping(self) -> bool:
        """Every backend answers (readiness)."""
        for backend in self._backends:
            if not await backend.ping():
                return False
        return True


def open_stores(settings: StoreUrls, *, cache_ttl: float = 0.0, clock: Callable[[], float] = time.monotonic) -> Stores:
    """The stores the settings name, not connected yet (``await stores.open()``)."""
    users = open_store(settings.users)
    sessions = users if settings.sessions == settings.users else open_store(settings.sessions)
    return Stores(users, sessions, cache_ttl=cache_ttl, clock=clock)
