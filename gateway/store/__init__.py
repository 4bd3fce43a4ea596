"""Where state lives: the store Protocols (base.py), the change feed (feed.py), the session cache
(cache.py), stores opened from URLs (stores.py), and the SQLite store."""

from gateway.store.base import (
    AuditRecord,
    BackOff,
    ChangeFeed,
    DuplicateUser,
    SessionRecord,
    Store,
    StoreError,
    StoreUnavailable,
    TokenRecord,
    TokenStore,
    UnknownUser,
    User,
)
from gateway.store.cache import SessionCache, SignedIn
from gateway.store.stores import Stores, open_session_store, open_stores, open_user_store

__all__ = [
    "AuditRecord",
    "BackOff",
    "ChangeFeed",
    "DuplicateUser",
    "SessionCache",
    "SessionRecord",
    "SignedIn",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "Stores",
    "TokenRecord",
    "TokenStore",
    "UnknownUser",
    "User",
    "open_session_store",
    "open_stores",
    "open_user_store",
]
