"""Stores opened from URLs: ``open_user_store(url)`` and ``open_session_store(url)`` for one
backend each, ``open_stores(settings)`` for what a gateway process (or a command) uses, gathered in
``Stores`` with the session cache over them.

``[store] users`` is ``sqlite:///PATH`` or ``postgresql://...``; ``[store] sessions`` is
``sqlite:///PATH`` or ``redis://...``. With neither set, ``[store] path`` is both (one SQLite file):
the settings turn it into the two URLs. Two URLs naming one file open it once.

Every process of one machine that uses the same settings shares one change counter (store/feed.py),
beside ``[store] path`` also when the stores are servers: a change made by any worker or command
on this machine is then in force on every worker before it returns, not only within the servers'
own notification delay. The PostgreSQL and Redis drivers are imported only when such a URL is used.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from gateway.config.parsers import redacted_url
from gateway.store.base import (
    AuditStore,
    ChangeFeed,
    FactorStore,
    SessionBackend,
    SessionStore,
    StoreError,
    StoreUnavailable,
    ThrottleStore,
    UserBackend,
    UserStore,
)
from gateway.store.cache import SessionCache
from gateway.store.feed import CombinedFeed, counter_path
from gateway.store.sqlite import SqliteStore

__all__ = ["OpenFailed", "StoreUrls", "Stores", "open_session_store", "open_stores", "open_user_store", "sqlite_url"]

SQLITE = "sqlite:///"
POSTGRES = ("postgresql://", "postgres://")
REDIS = ("redis://", "rediss://")


class StoreUrls(Protocol):
    """What ``open_stores`` reads from the settings (config's StoreSettings)."""

    @property
    def path(self) -> Path: ...
    @property
    def users(self) -> str: ...
    @property
    def sessions(self) -> str: ...


def sqlite_url(path: Path) -> str:
    """The URL of a SQLite file (``sqlite:////abs/path`` for an absolute one)."""
    return SQLITE + str(path)


def _sqlite(url: str) -> SqliteStore | None:
    if url.startswith(SQLITE) and len(url) > len(SQLITE):
        return SqliteStore(Path(url[len(SQLITE):]))
    return None


def _not_a_store(url: str, expected: str) -> StoreError:
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme:
        return StoreError(f"{scheme}:// cannot be opened here: expected {expected}")
    return StoreError(f"{redacted_url(url)!r}: not a store URL: expected {expected}")


def open_user_store(url: str, *, counter: Path | None = None) -> UserBackend:
    """The user store ``url`` names, not connected yet (``await store.open()``). ``counter``: the
    machine's shared change counter (SQLite keeps its own beside its file). Raises StoreError with
    one line for a URL it cannot open."""
    store = _sqlite(url)
    if store is not None:
        return store
    if url.startswith(POSTGRES):
        from gateway.store.postgres import PostgresUserStore

        return PostgresUserStore(url, counter=counter)
    raise _not_a_store(url, "sqlite:///PATH or postgresql://...")


def open_session_store(url: str, *, counter: Path | None = None) -> SessionBackend:
    """The session store ``url`` names, not connected yet, as ``open_user_store``."""
    store = _sqlite(url)
    if store is not None:
        return store
    if url.startswith(REDIS):
        from gateway.store.redis_sessions import RedisSessionStore

        return RedisSessionStore(url, counter=counter)
    raise _not_a_store(url, "sqlite:///PATH or redis://...")


class OpenFailed(StoreUnavailable):
    """A backend could not be opened: ``side`` is "users", "sessions" or "both" (one backend)."""

    def __init__(self, side: str, cause: StoreError) -> None:
        super().__init__(str(cause))
        self.side = side


class Stores:
    """The stores one process uses: users (and the audit trail) and sessions (and the throttle
    counters), each possibly another backend, and the session cache over them."""

    def __init__(self, users: UserBackend, sessions: SessionBackend, *, cache_ttl: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.users: UserStore = users
        self.audit: AuditStore = users
        self.factors: FactorStore = users  # second factors and recovery codes live beside the users
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
        """Connect every backend; OpenFailed names the side that could not be opened."""
        opened: list[UserBackend | SessionBackend] = []
        try:
            for backend in self._backends:
                try:
                    await backend.open()
                except StoreError as exc:
                    side = "users" if backend is self.users else "sessions"
                    raise OpenFailed(side if len(self._backends) > 1 else "both", exc) from exc
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
    counter = counter_path(settings.path)
    users = open_user_store(settings.users, counter=counter)
    if settings.sessions == settings.users:
        return Stores(users, users, cache_ttl=cache_ttl, clock=clock)  # type: ignore[arg-type]  # one SQLite file
    sessions = open_session_store(settings.sessions, counter=counter)
    return Stores(users, sessions, cache_ttl=cache_ttl, clock=clock)
