"""The embedded default store: one SQLite file in WAL mode, through aiosqlite.

One connection per process (aiosqlite runs it on its own thread). Writes that span several statements
take ``_write_lock`` so concurrent tasks cannot interleave inside a transaction.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.store.base import DuplicateUser, SessionRecord, StoreError, UnknownUser, User

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL DEFAULT '',
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    auth_time REAL NOT NULL,
    last_seen REAL NOT NULL,
    client TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id);
"""

_USER_COLUMNS = "id, name, password_hash, roles, disabled, created_at"


def _roles(column: Any) -> tuple[str, ...]:
    """Roles are stored sorted and comma-joined (role names cannot contain a comma)."""
    text = str(column)
    return tuple(text.split(",")) if text else ()


def _user(row: Any) -> User:
    return User(
        id=int(row[0]),
        name=str(row[1]),
        password_hash=str(row[2]),
        roles=_roles(row[3]),
        disabled=bool(row[4]),
        created_at=float(row[5]),
    )


class SqliteStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def open(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            self._db = await aiosqlite.connect(self._path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._db.execute("PRAGMA busy_timeout=5000")
            async with self._write_lock:
                await self._db.executescript(_SCHEMA)
                await self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StoreError(f"{self._path}: cannot open the store: {exc}") from exc

    async def close(self) -> None:
        # aiosqlite's thread is non-daemon since 0.22: an unclosed connection hangs process exit.
        if self._db is not None:
            db, self._db = self._db, None
            await db.close()

    async def ping(self) -> bool:
        try:
            async with self.db.execute("SELECT 1") as cursor:
                return await cursor.fetchone() is not None
        except (StoreError, sqlite3.Error, ValueError):
            return False

    # --- users

    async def add_user(self, name: str, password_hash: str, roles: tuple[str, ...], now: float) -> User:
        try:
            async with self._write_lock:
                cursor = await self.db.execute(
                    "INSERT INTO users (name, password_hash, roles, created_at) VALUES (?, ?, ?, ?)",
                    (name, password_hash, ",".join(sorted(roles)), now),
                )
        except sqlite3.IntegrityError:
            raise DuplicateUser(f"user {name!r} already exists") from None
        assert cursor.lastrowid is not None
        return User(cursor.lastrowid, name, password_hash, tuple(sorted(roles)), False, now)

    async def get_user(self, name: str) -> User | None:
        async with self.db.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,)) as cursor:
            row = await cursor.fetchone()
        return None if row is None else _user(row)

    async def list_users(self) -> list[User]:
        async with self.db.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name") as cursor:
            return [_user(row) for row in await cursor.fetchall()]

    async def _update_user(self, name: str, sql: str, *params: object) -> None:
        async with self._write_lock:
            cursor = await self.db.execute(sql, (*params, name))
        if cursor.rowcount == 0:
            raise UnknownUser(f"no user named {name!r}")

    async def set_password_hash(self, name: str, password_hash: str) -> None:
        await self._update_user(name, "UPDATE users SET password_hash = ? WHERE name = ?", password_hash)

    async def set_roles(self, name: str, roles: tuple[str, ...]) -> None:
        await self._update_user(name, "UPDATE users SET roles = ? WHERE name = ?", ",".join(sorted(roles)))

    async def set_disabled(self, name: str, disabled: bool) -> None:
        await self._update_user(name, "UPDATE users SET disabled = ? WHERE name = ?", int(disabled))

    async def delete_user(self, name: str) -> None:
        # ON DELETE CASCADE removes the user's sessions in the same statement.
        await self._update_user(name, "DELETE FROM users WHERE name = ?")

    # --- sessions

    async def create_session(self, id_hash: str, user_id: int, now: float, client: str, user_agent: str) -> None:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO sessions (id_hash, user_id, created_at, auth_time, last_seen, client, user_agent)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (id_hash, user_id, now, now, now, client, user_agent),
            )

    async def get_session(self, id_hash: str) -> SessionRecord | None:
        async with self.db.execute(
            "SELECT s.id_hash, u.id, u.name, u.roles, u.disabled, s.created_at, s.auth_time, s.last_seen,"
            " s.client, s.user_agent FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
            (id_hash,),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return SessionRecord(
            id_hash=str(row[0]),
            user_id=int(row[1]),
            user_name=str(row[2]),
            roles=_roles(row[3]),
            user_disabled=bool(row[4]),
            created_at=float(row[5]),
            auth_time=float(row[6]),
            last_seen=float(row[7]),
            client=str(row[8]),
            user_agent=str(row[9]),
        )

    async def touch_session(self, id_hash: str, now: float) -> None:
        async with self._write_lock:
            await self.db.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash))

    async def delete_session(self, id_hash: str) -> None:
        async with self._write_lock:
            await self.db.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))

    async def delete_user_sessions(self, user_id: int) -> int:
        async with self._write_lock:
            cursor = await self.db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        return cursor.rowcount
