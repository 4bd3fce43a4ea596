"""The embedded default store: one SQLite file in WAL mode, through aiosqlite.

One connection per process (aiosqlite runs it on its own thread). Writes that span several statements
take ``_write_lock`` so concurrent tasks cannot interleave inside a transaction.

With ``session_cache_ttl`` > 0 (the serving gateway), session lookups are answered from an in-process
``SessionCache``: local writes to users and sessions invalidate it at once, and a background task polls
a change counter every ``POLL_INTERVAL`` to invalidate it for other processes' writes (the CLI, other
workers). The counter is bumped by triggers, in the same transaction as the change, on every write to
``users`` and every session write except the idle clock's: so the audit trail, the throttle counters
and last_seen updates (which other workers make all the time) never empty the cache, while a
revocation from any process, of any version of this code, always does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.store.base import (
    AuditRecord,
    DuplicateUser,
    SessionRecord,
    StoreError,
    ThrottleState,
    UnknownUser,
    User,
)
from gateway.store.cache import SessionCache

SCHEMA_VERSION = 3
POLL_INTERVAL = 0.1  # seconds between change-counter polls while a session cache is on

log = logging.getLogger("gateway.store")

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
    user_agent TEXT NOT NULL DEFAULT '',
    persistent INTEGER NOT NULL DEFAULT 0,
    binding TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions(user_id);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    event TEXT NOT NULL,
    user TEXT,
    client TEXT,
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
CREATE INDEX IF NOT EXISTS audit_user ON audit(user, time);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n INTEGER NOT NULL
);
INSERT OR IGNORE INTO changes (id, n) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS users_inserted AFTER INSERT ON users BEGIN UPDATE changes SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS users_updated AFTER UPDATE ON users BEGIN UPDATE changes SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS users_deleted AFTER DELETE ON users BEGIN UPDATE changes SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS sessions_inserted AFTER INSERT ON sessions BEGIN UPDATE changes SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS sessions_deleted AFTER DELETE ON sessions BEGIN UPDATE changes SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS sessions_updated
    AFTER UPDATE OF id_hash, user_id, created_at, auth_time, persistent, binding ON sessions
    BEGIN UPDATE changes SET n = n + 1; END;
CREATE TABLE IF NOT EXISTS throttle (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure REAL NOT NULL
);
"""

# Steps from each older schema version; CREATE ... IF NOT EXISTS above covers new tables.
_MIGRATIONS: dict[int, list[str]] = {
    1: [
        "ALTER TABLE sessions ADD COLUMN persistent INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE sessions ADD COLUMN binding TEXT NOT NULL DEFAULT ''",
    ],
}
# A counter whose last failure is older than the window starts again from one.
_RECORD_FAILURE = (
    "INSERT INTO throttle (key, failures, last_failure) VALUES (?, 1, ?) ON CONFLICT(key) DO UPDATE SET"
    " failures = CASE WHEN ? - last_failure > ? THEN 1 ELSE failures + 1 END, last_failure = ?"
)
_SESSION_COLUMNS = (
    "s.id_hash, u.id, u.name, u.roles, u.disabled, s.created_at, s.auth_time, s.last_seen, s.client, s.user_agent,"
    " s.persistent, s.binding"
)

_USER_COLUMNS = "id, name, password_hash, roles, disabled, created_at"


def _roles(column: Any) -> tuple[str, ...]:
    """Roles are stored sorted and comma-joined (role names cannot contain a comma)."""
    text = str(column)
    return tuple(text.split(",")) if text else ()


def _session(row: Any) -> SessionRecord:
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
        persistent=bool(row[10]),
        binding=str(row[11]),
    )


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
    def __init__(self, path: Path, *, session_cache_ttl: float = 0.0) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._cache = SessionCache(session_cache_ttl) if session_cache_ttl > 0 else None
        self._poller: asyncio.Task[None] | None = None
        self._seen_changes = 0

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("store is not open")
        return self._db

    async def open(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # The store holds password hashes: a new one is readable by its owner only, whatever the
            # umask or the folder's mode (SQLite gives its -wal and -shm files the same mode).
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            self._db = await aiosqlite.connect(self._path, isolation_level=None)
            await self._db.execute("PRAGMA journal_mode=WAL")
            await self._db.execute("PRAGMA synchronous=NORMAL")
            await self._db.execute("PRAGMA foreign_keys=ON")
            await self._db.execute("PRAGMA busy_timeout=5000")
            async with self._write_lock:
                async with self._db.execute("PRAGMA user_version") as cursor:
                    row = await cursor.fetchone()
                version = int(row[0]) if row else 0
                if version in _MIGRATIONS:
                    for statement in _MIGRATIONS[version]:
                        await self._db.execute(statement)
                await self._db.executescript(_SCHEMA)
                await self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            if self._cache is not None:
                self._seen_changes = await self._change_count()
                self._poller = asyncio.create_task(self._watch_other_writers())
        except (OSError, sqlite3.Error) as exc:
            await self.close()
            raise StoreError(f"{self._path}: cannot open the store: {exc}") from exc

    async def _change_count(self) -> int:
        async with self.db.execute("SELECT n FROM changes WHERE id = 1") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _watch_other_writers(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            try:
                await self.check_other_writers()
            except Exception as exc:  # the cache's TTL still bounds staleness; keep trying
                if self._cache is not None:
                    self._cache.invalidate()
                log.warning("store change poll failed: %s", type(exc).__name__)

    async def check_other_writers(self) -> bool:
        """Empty the session cache if anyone changed a user or a session since the last look."""
        count = await self._change_count()
        if count == self._seen_changes or self._cache is None:
            return False
        self._seen_changes = count
        self._cache.invalidate()
        return True

    def _changed(self) -> None:
        """A local write to users or sessions: no cached row may outlive it."""
        if self._cache is not None:
            self._cache.invalidate()

    async def close(self) -> None:
        if self._poller is not None:
            poller, self._poller = self._poller, None
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller  # before the connection closes under it
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
            self._changed()
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

    async def create_session(
        self, id_hash: str, user_id: int, now: float, client: str, user_agent: str,
        *, persistent: bool = False, binding: str = "",
    ) -> None:
        async with self._write_lock:
            await self.db.execute(
                "INSERT INTO sessions (id_hash, user_id, created_at, auth_time, last_seen, client, user_agent,"
                " persistent, binding) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (id_hash, user_id, now, now, now, client, user_agent, int(persistent), binding),
            )
            self._changed()

    async def _sessions(self, where: str, params: tuple[object, ...]) -> list[SessionRecord]:
        async with self.db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id {where}", params
        ) as cursor:
            return [_session(row) for row in await cursor.fetchall()]

    async def get_session(self, id_hash: str) -> SessionRecord | None:
        cache = self._cache
        if cache is None:
            found = await self._sessions("WHERE s.id_hash = ?", (id_hash,))
            return found[0] if found else None
        hit, record = cache.get(id_hash, time.monotonic())
        if hit:
            return record
        generation, read_at = cache.generation, time.monotonic()
        found = await self._sessions("WHERE s.id_hash = ?", (id_hash,))
        record = found[0] if found else None
        cache.put(id_hash, record, generation, read_at)
        return record

    async def list_sessions(self, user_id: int | None = None) -> list[SessionRecord]:
        if user_id is None:
            return await self._sessions("ORDER BY u.name, s.created_at", ())
        return await self._sessions("WHERE s.user_id = ? ORDER BY s.created_at", (user_id,))

    async def count_sessions(self, *, created_after: float, seen_after: float) -> int:
        async with self.db.execute(
            "SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE u.disabled = 0 AND s.created_at >= ? AND s.last_seen >= ?", (created_after, seen_after)
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def find_sessions(self, id_prefix: str) -> list[SessionRecord]:
        if not id_prefix or not all(c in "0123456789abcdef" for c in id_prefix):
            return []
        return await self._sessions("WHERE s.id_hash >= ? AND s.id_hash < ?", (id_prefix, id_prefix + "g"))

    async def touch_session(self, id_hash: str, now: float) -> None:
        async with self._write_lock:
            await self.db.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash))
        if self._cache is not None:
            self._cache.touched(id_hash, now)

    async def delete_session(self, id_hash: str) -> bool:
        async with self._write_lock:
            cursor = await self.db.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))
            self._changed()
        return cursor.rowcount > 0

    async def delete_user_sessions(self, user_id: int, *, keep: str | None = None) -> int:
        async with self._write_lock:
            cursor = await self.db.execute(
                "DELETE FROM sessions WHERE user_id = ? AND id_hash != ?", (user_id, keep or "")
            )
            self._changed()
        return cursor.rowcount

    async def delete_all_sessions(self) -> int:
        async with self._write_lock:
            cursor = await self.db.execute("DELETE FROM sessions")
            self._changed()
        return cursor.rowcount

    # --- audit

    async def add_audit(self, records: list[AuditRecord]) -> None:
        async with self._write_lock:
            await self.db.executemany(
                "INSERT INTO audit (time, event, user, client, detail) VALUES (?, ?, ?, ?, ?)",
                [(r.time, r.event, r.user, r.client, r.detail) for r in records],
            )

    async def list_audit(
        self, *, user: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        clauses: list[str] = []
        params: list[object] = []
        if user is not None:
            clauses.append("user = ? COLLATE NOCASE")
            params.append(user)
        if since is not None:
            clauses.append("time >= ?")
            params.append(since)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        async with self.db.execute(
            f"SELECT time, event, user, client, detail FROM (SELECT * FROM audit {where} ORDER BY time DESC, id DESC"
            f" LIMIT ?) ORDER BY time, id",
            (*params, limit),
        ) as cursor:
            return [AuditRecord(float(r[0]), str(r[1]), r[2], r[3], str(r[4])) for r in await cursor.fetchall()]

    # --- sign-in throttling

    async def get_throttle(self, keys: list[str]) -> dict[str, ThrottleState]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        async with self.db.execute(
            f"SELECT key, failures, last_failure FROM throttle WHERE key IN ({marks})", keys
        ) as cursor:
            return {str(r[0]): ThrottleState(int(r[1]), float(r[2])) for r in await cursor.fetchall()}

    async def record_failure(self, keys: list[str], now: float, window: float) -> None:
        async with self._write_lock:
            await self.db.executemany(_RECORD_FAILURE, [(key, now, now, window, now) for key in keys])

    async def reserve_attempt(
        self, keys: list[str], now: float, window: float, wait: Callable[[dict[str, ThrottleState]], float]
    ) -> float:
        # BEGIN IMMEDIATE takes SQLite's write lock first, so the check and the reservation are one
        # step even across worker processes sharing the file.
        async with self._write_lock:
            await self.db.execute("BEGIN IMMEDIATE")
            try:
                marks = ",".join("?" * len(keys))
                async with self.db.execute(
                    f"SELECT key, failures, last_failure FROM throttle WHERE key IN ({marks})", keys
                ) as cursor:
                    states = {str(r[0]): ThrottleState(int(r[1]), float(r[2])) for r in await cursor.fetchall()}
                seconds = wait(states)
                if seconds <= 0:
                    await self.db.executemany(_RECORD_FAILURE, [(key, now, now, window, now) for key in keys])
                await self.db.execute("COMMIT")
            except BaseException:
                await self.db.execute("ROLLBACK")
                raise
        return seconds

    async def release_attempt(self, keys: list[str]) -> None:
        async with self._write_lock:
            await self.db.executemany(
                "UPDATE throttle SET failures = max(failures - 1, 0) WHERE key = ?", [(key,) for key in keys]
            )

    async def clear_throttle(self, keys: list[str]) -> None:
        async with self._write_lock:
            await self.db.executemany("DELETE FROM throttle WHERE key = ?", [(key,) for key in keys])
