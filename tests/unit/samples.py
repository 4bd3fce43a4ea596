"""Sample values shared by the unit tests of the header rules and the WebSocket relay."""

from __future__ import annotations

import ipaddress
import sqlite3
from pathlib import Path

from gateway.policy import Principal
from gateway.proxy.headers import HeaderRules

RULES = HeaderRules(
    user_header=b"X-Forwarded-User",
    roles_header=b"X-Forwarded-Roles",
    cookie_names=frozenset({b"gateway_session", b"gateway_csrf"}),
    upstream_host=b"127.0.0.1:8081",
    preserve_host=False,
    trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),),
)
ALICE = Principal(user="alice", roles=frozenset({"staff", "admin"}), auth_time=0.0)


def version_1_store(path: Path) -> None:
    """A store as the first release left it (no session persistence or binding columns)."""
    with sqlite3.connect(path) as conn:
        conn.executescript(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE COLLATE NOCASE,"
            " password_hash TEXT NOT NULL, roles TEXT NOT NULL DEFAULT '', disabled INTEGER NOT NULL DEFAULT 0,"
            " created_at REAL NOT NULL);"
            "CREATE TABLE sessions (id_hash TEXT PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id)"
            " ON DELETE CASCADE, created_at REAL NOT NULL, auth_time REAL NOT NULL, last_seen REAL NOT NULL,"
            " client TEXT NOT NULL DEFAULT '', user_agent TEXT NOT NULL DEFAULT '');"
            "PRAGMA user_version=1;"
        )
