"""Where state lives: the store Protocols (base.py), the change feed (feed.py), the session cache
(cache.py), stores opened from URLs (stores.py), and the SQLite store."""

from gateway.store.base import (
    SESSION_MFA,
    AuditRecord,
    BackOff,
    ChangeFeed,
    DuplicateUser,
    Factor,
    FactorStore,
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
    "SESSION_MFA",
    "AuditRecord",
    "BackOff",
    "ChangeFeed",
    "DuplicateUser",
    "Factor",
    "FactorStore",
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
