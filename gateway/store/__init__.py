"""Where state lives: the store Protocols (base.py), the session cache, and the SQLite store."""

from gateway.store.base import Store, StoreError, StoreUnavailable
from gateway.store.sqlite import SqliteStore

__all__ = ["SqliteStore", "Store", "StoreError", "StoreUnavailable"]
