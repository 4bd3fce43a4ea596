"""The embedded default store: one SQLite file in WAL mode, through aiosqlite.

Several processes share the file (the gateway's workers, the CLI), so every write must be ready to
meet another process's lock. Each process has two connections (aiosqlite runs each on its own
thread):
- the writer, used only under ``_write_lock``, where every write is one ``BEGIN IMMEDIATE``
  transaction. IMMEDIATE takes SQLite's write lock first, waiting for it through the busy timeout;
  a transaction that read first and then tried to write could only be refused (SQLITE_BUSY on the
  lock upgrade, which no busy timeout retries) when another process wrote in between.
- the reader (``query_only``), where every read is one ``execute_fetchall``: the statement runs to
  its end in one step, so no read transaction stays open across an ``await``. With one shared
  connection, a lookup half-way through its rows kept a read transaction open under the next task's
  write, which SQLite then refused at once with `database is locked` (issues 10 and 11).

After each committed change to users or sessions (the idle clock's last_seen refreshes aside), the
store publishes it on its change feed (store/feed.py: a shared counter beside the file), before the
call returns: every process's session cache (store/cache.py) sees it on its next lookup. The audit
trail, the throttle counters and last_seen refreshes (which other workers write all the time) never
empty the caches. (The ``changes`` table and its triggers, from the releases that polled it, are
still kept up to date, so those releases still notice this one's writes.)

Every sqlite3 or aiosqlite exception is translated here: callers only ever see ``StoreError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.store.base import (
    SESSION_MFA,
    AuditRecord,
    BackOff,
    ChangeFeed,
    DuplicateUser,
    Factor,
    SessionRecord,
    StoreError,
    StoreUnavailable,
    ThrottleState,
    TokenRecord,
    UnknownUser,
    User,
    wait_needed,
)
from gateway.store.feed import SharedCounter, counter_path

SCHEMA_VERSION = 5
# How long a statement waits for another process's lock before giving up. Write transactions are
# a few statements long (the longest, a batch of idle-clock refreshes), so a wait this long means
# something is wrong: the request then gets 503, not a hang.
BUSY_TIMEOUT = 10.0
WAL_RETRY = 0.01  # seconds between attempts to turn a file to WAL while another process reads it

log = logging.getLogger("gateway.store")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a stray session can never name a new user
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    roles TEXT NOT NULL DEFAULT '',
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    password_changed_at REAL NOT NULL DEFAULT 0
);
-- No foreign key to users: the session side may live elsewhere, and is told of a user's deletion.
CREATE TABLE IF NOT EXISTS sessions (
    id_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    created_at REAL NOT NULL,
    auth_time REAL NOT NULL,
    last_seen REAL NOT NULL,
    client TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    persistent INTEGER NOT NULL DEFAULT 0,
    binding TEXT NOT NULL DEFAULT '',
    mfa TEXT NOT NULL DEFAULT ''  -- how the second factor was passed, '' when it was not
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
-- --- factors (version 5: new tables only, so CREATE ... IF NOT EXISTS is the whole migration)
CREATE TABLE IF NOT EXISTS factors (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used REAL NOT NULL DEFAULT 0,
    last_step INTEGER NOT NULL DEFAULT -1  -- the last TOTP step accepted: single use across processes
);
CREATE INDEX IF NOT EXISTS factors_user ON factors(user_id);
CREATE TABLE IF NOT EXISTS recovery_codes (
    user_id INTEGER NOT NULL,
    digest TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (user_id, digest)
);
-- tokens: new in files made before it, created on open like every table here
CREATE TABLE IF NOT EXISTS tokens (
    digest TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    roles TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    last_used REAL NOT NULL DEFAULT 0,
    last_client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS tokens_user ON tokens(user_id);
CREATE TRIGGER IF NOT EXISTS tokens_inserted AFTER INSERT ON tokens BEGIN UPDATE changes SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS tokens_deleted AFTER DELETE ON tokens BEGIN UPDATE changes SET n = n + 1; END;
-- A deleted user's tokens die with it (ids are never reused, but a dead row is no use to anyone).
CREATE TRIGGER IF NOT EXISTS users_deleted_tokens AFTER DELETE ON users BEGIN DELETE FROM tokens WHERE user_id = OLD.id; END;
CREATE TABLE IF NOT EXISTS throttle (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    last_failure REAL NOT NULL
);
"""

# Steps from each older schema version (each applies the later ones too); CREATE ... IF NOT EXISTS
# above covers new tables. (Older files keep their ON DELETE CASCADE: harmless, nothing relies on it.)
_PASSWORD_CHANGED = "ALTER TABLE users ADD COLUMN password_changed_at REAL NOT NULL DEFAULT 0"
_SESSION_MFA = "ALTER TABLE sessions ADD COLUMN mfa TEXT NOT NULL DEFAULT ''"
_MIGRATIONS: dict[int, list[str]] = {
    1: [
        "ALTER TABLE sessions ADD COLUMN persistent INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE sessions ADD COLUMN binding TEXT NOT NULL DEFAULT ''",
        _PASSWORD_CHANGED,
        _SESSION_MFA,
    ],
    2: [_PASSWORD_CHANGED, _SESSION_MFA],
    3: [_PASSWORD_CHANGED, _SESSION_MFA],
    4: [_SESSION_MFA],
}
# A counter whose last failure is older than the window starts again from one.
_RECORD_FAILURE = (
    "INSERT INTO throttle (key, failures, last_failure) VALUES (?, 1, ?) ON CONFLICT(key) DO UPDATE SET"
    " failures = CASE WHEN ? - last_failure > ? THEN 1 ELSE failures + 1 END, last_failure = ?"
)
_TOUCH = "UPDATE sessions SET last_seen = max(last_seen, ?) WHERE id_hash = ?"  # never moves the clock back
_SESSION_COLUMNS = "id_hash, user_id, created_at, auth_time, last_seen, client, user_agent, persistent, binding, mfa"
_USER_COLUMNS = "id, name, password_hash, roles, disabled, created_at, password_changed_at"
_FACTOR_COLUMNS = "id, user_id, kind, name, secret, created_at, last_used"


def _statements(script: str) -> list[str]:
    """A script cut into statements (triggers keep their inner `;`): run one by one, they can share
    one transaction, which ``executescript`` (it commits first) cannot."""
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    assert not pending.strip(), "the schema ends in an incomplete statement"
    return statements


_SCHEMA_STATEMENTS = _statements(_SCHEMA)


class _Conflict(StoreError):
    """A constraint refused the write (a duplicate name): the caller says which."""


def _busy(exc: sqlite3.Error) -> bool:
    """Another connection holds a lock SQLite would not wait for (SQLITE_BUSY or an extended code of it)."""
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


def _roles(column: Any) -> tuple[str, ...]:
    """Roles are stored sorted and comma-joined (role names cannot contain a comma)."""
    text = str(column)
    return tuple(text.split(",")) if text else ()


def _session(row: Any) -> SessionRecord:
    if str(row[9]) not in SESSION_MFA:  # damaged: never read as a passed second factor
        raise StoreError(f"damaged session record {str(row[0])[:12]}: unknown mfa value")
    return SessionRecord(
        id_hash=str(row[0]),
        user_id=int(row[1]),
        created_at=float(row[2]),
        auth_time=float(row[3]),
        last_seen=float(row[4]),
        client=str(row[5]),
        user_agent=str(row[6]),
        persistent=bool(row[7]),
        binding=str(row[8]),
        mfa=str(row[9]),
    )


def _factor(row: Any) -> Factor:
    return Factor(id=int(row[0]), user_id=int(row[1]), kind=str(row[2]), name=str(row[3]), secret=str(row[4]),
                  created_at=float(row[5]), last_used=float(row[6]))


_TOKEN_COLUMNS = "digest, user_id, name, roles, created_at, expires_at, last_used, last_client"


def _token(row: Any) -> TokenRecord:
    return TokenRecord(str(row[0]), int(row[1]), str(row[2]), _roles(row[3]), float(row[4]), float(row[5]),
                       float(row[6]), str(row[7]))


def _user(row: Any) -> User:
    return User(
        id=int(row[0]),
        name=str(row[1]),
        password_hash=str(row[2]),
        roles=_roles(row[3]),
        disabled=bool(row[4]),
        created_at=float(row[5]),
        password_changed_at=float(row[6]),
    )


class SqliteStore:
    """Users, sessions, the audit trail and the throttle counters in one SQLite file. ``feed``: where
    committed changes to users and sessions are published; by default the shared counter beside the
    file, so that no process writing to it can forget to tell the others."""

    def __init__(self, path: Path, *, feed: ChangeFeed | None = None) -> None:
        self._path = path
        self.feed: ChangeFeed = feed if feed is not None else SharedCounter(counter_path(path))
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def _connect(self) -> aiosqlite.Connection:
        # The busy timeout is given to connect() so that it already holds for the first PRAGMA
        # (switching a new file to WAL takes a lock too).
        db = await aiosqlite.connect(self._path, isolation_level=None, timeout=BUSY_TIMEOUT)
        try:
            await db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
            await self._switch_to_wal(db)
            await db.execute("PRAGMA synchronous=NORMAL")
            await db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            await db.close()
            raise
        return db

    @staticmethod
    async def _switch_to_wal(db: aiosqlite.Connection) -> None:
        """Turning a file (new, or from an old release) to WAL needs its exclusive lock, taken
        straight from a shared one: SQLite refuses that at once when another process is reading,
        without the busy handler. Retried until the busy timeout; a file in WAL already needs no lock."""
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                await db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(WAL_RETRY)  # a back-off between attempts, not synchronisation

    async def open(self) -> None:
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            # The store holds password hashes: a new one is readable by its owner only, whatever the
            # umask or the folder's mode (SQLite gives its -wal and -shm files the same mode).
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            self._writer = await self._connect()
            self._reader = await self._connect()
            await self._reader.execute("PRAGMA query_only=ON")
            # Workers start at the same moment: one transaction, so only one of them migrates and
            # the others see the result (the version is read under the write lock).
            async with self._transaction() as db:
                rows = list(await db.execute_fetchall("PRAGMA user_version"))
                version = int(rows[0][0]) if rows else 0
                for statement in _MIGRATIONS.get(version, []):
                    await db.execute(statement)
                for statement in _SCHEMA_STATEMENTS:
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            await self.feed.open()
        except (OSError, sqlite3.Error, ValueError, StoreError) as exc:
            await self.close()
            raise StoreError(f"{self._path}: cannot open the store: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction on the writer connection, committed at the end, rolled back on any
        error; ``StoreUnavailable`` when another process held the lock past the busy timeout."""
        async with self._write_lock:
            if self._writer is None:
                raise StoreUnavailable("store is not open")
            db = self._writer
            try:
                try:
                    await db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    raise StoreUnavailable(f"the store is busy: {exc}") from exc
                try:
                    yield db
                    await db.execute("COMMIT")
                except sqlite3.IntegrityError as exc:
                    raise _Conflict(str(exc)) from exc
                except (sqlite3.Error, ValueError) as exc:  # ValueError: aiosqlite's closed connection
                    raise StoreUnavailable(f"the store cannot be written: {exc}") from exc
            except BaseException:
                # Also when cancelled while BEGIN waited for the lock: the connection's thread
                # still runs it, and the transaction would then hold every process's write lock.
                # The ROLLBACK is queued after it; shielded, so a second cancellation cannot stop
                # it. ("no transaction is active" when BEGIN itself failed: nothing to undo.)
                with contextlib.suppress(sqlite3.Error, ValueError):
                    await asyncio.shield(db.execute("ROLLBACK"))
                raise

    async def _read(self, sql: str, params: Sequence[object] = ()) -> list[Any]:
        """Every row of one query, fetched in one step on the reader connection."""
        if self._reader is None:
            raise StoreUnavailable("store is not open")
        try:
            return list(await self._reader.execute_fetchall(sql, params))
        except (sqlite3.Error, ValueError) as exc:  # ValueError: aiosqlite's closed connection
            raise StoreUnavailable(f"the store cannot be read: {exc}") from exc

    async def _changed(self) -> None:
        """A write to users or sessions is committed: every process's cache must hear of it before
        the caller goes on (a sign-out, a revocation is then in force everywhere)."""
        await self.feed.publish()

    async def close(self) -> None:
        await self.feed.close()
        # aiosqlite's thread is non-daemon since 0.22: an unclosed connection hangs process exit.
        for name in ("_reader", "_writer"):
            db = getattr(self, name)
            if db is not None:
                setattr(self, name, None)
                await db.close()

    async def ping(self) -> bool:
        try:
            return bool(await self._read("SELECT 1"))
        except StoreError:
            return False

    # --- users

    async def add_user(self, name: str, password_hash: str, roles: tuple[str, ...], now: float) -> User:
        try:
            async with self._transaction() as db:
                cursor = await db.execute(
                    "INSERT INTO users (name, password_hash, roles, created_at) VALUES (?, ?, ?, ?)",
                    (name, password_hash, ",".join(sorted(roles)), now),
                )
        except _Conflict:
            raise DuplicateUser(f"user {name!r} already exists") from None
        await self._changed()
        assert cursor.lastrowid is not None
        return User(cursor.lastrowid, name, password_hash, tuple(sorted(roles)), False, now)

    async def import_users(self, users: list[User]) -> None:
        try:
            async with self._transaction() as db:
                await db.executemany(
                    f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(u.id, u.name, u.password_hash, ",".join(sorted(u.roles)), int(u.disabled), u.created_at,
                      u.password_changed_at) for u in users],
                )
        except _Conflict:
            raise DuplicateUser("a user of that name or id already exists") from None
        await self._changed()

    async def get_user(self, name: str) -> User | None:
        rows = await self._read(f"SELECT {_USER_COLUMNS} FROM users WHERE name = ?", (name,))
        return _user(rows[0]) if rows else None

    async def get_user_by_id(self, user_id: int) -> User | None:
        rows = await self._read(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ?", (user_id,))
        return _user(rows[0]) if rows else None

    async def list_users(self) -> list[User]:
        return [_user(row) for row in await self._read(f"SELECT {_USER_COLUMNS} FROM users ORDER BY name")]

    async def _update_user(self, name: str, sql: str, *params: object) -> None:
        async with self._transaction() as db:
            cursor = await db.execute(sql, (*params, name))
        await self._changed()
        if cursor.rowcount == 0:
            raise UnknownUser(f"no user named {name!r}")

    async def set_password_hash(self, name: str, password_hash: str, *, changed_at: float | None = None) -> None:
        if changed_at is None:
            await self._update_user(name, "UPDATE users SET password_hash = ? WHERE name = ?", password_hash)
        else:
            await self._update_user(name, "UPDATE users SET password_hash = ?, password_changed_at = ? WHERE name = ?",
                                    password_hash, changed_at)

    async def set_roles(self, name: str, roles: tuple[str, ...]) -> None:
        await self._update_user(name, "UPDATE users SET roles = ? WHERE name = ?", ",".join(sorted(roles)))

    async def set_disabled(self, name: str, disabled: bool) -> None:
        await self._update_user(name, "UPDATE users SET disabled = ? WHERE name = ?", int(disabled))

    async def delete_user(self, name: str) -> None:
        # Only the user: its sessions are the session store's (Accounts.delete ends them).
        await self._update_user(name, "DELETE FROM users WHERE name = ?")

    # --- factors

    async def add_factor(self, user_id: int, kind: str, name: str, secret: str, now: float) -> Factor:
        async with self._transaction() as db:
            cursor = await db.execute(
                "INSERT INTO factors (user_id, kind, name, secret, created_at) VALUES (?, ?, ?, ?, ?)",
                (user_id, kind, name, secret, now),
            )
        await self._changed()
        assert cursor.lastrowid is not None
        return Factor(cursor.lastrowid, user_id, kind, name, secret, now)

    async def list_factors(self, user_id: int) -> list[Factor]:
        rows = await self._read(f"SELECT {_FACTOR_COLUMNS} FROM factors WHERE user_id = ? ORDER BY id", (user_id,))
        return [_factor(row) for row in rows]

    async def delete_factor(self, user_id: int, factor_id: int) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM factors WHERE id = ? AND user_id = ?", (factor_id, user_id))
        await self._changed()
        return bool(cursor.rowcount > 0)

    async def delete_factors(self, user_id: int) -> int:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM factors WHERE user_id = ?", (user_id,))
            await db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
        await self._changed()
        return int(cursor.rowcount)

    async def use_totp_step(self, user_id: int, factor_id: int, step: int, now: float) -> bool:
        # One conditional UPDATE: of two processes offering the same step, only one changes the row.
        async with self._transaction() as db:
            cursor = await db.execute(
                "UPDATE factors SET last_step = ?, last_used = max(last_used, ?)"
                " WHERE id = ? AND user_id = ? AND kind = 'totp' AND last_step < ?",
                (step, now, factor_id, user_id, step),
            )
        await self._changed()
        return bool(cursor.rowcount > 0)

    async def set_recovery_codes(self, user_id: int, digests: list[str], now: float) -> None:
        async with self._transaction() as db:
            await db.execute("DELETE FROM recovery_codes WHERE user_id = ?", (user_id,))
            await db.executemany("INSERT OR IGNORE INTO recovery_codes (user_id, digest, created_at) VALUES (?, ?, ?)",
                                 [(user_id, digest, now) for digest in digests])
        await self._changed()

    async def use_recovery_code(self, user_id: int, digest: str, now: float) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM recovery_codes WHERE user_id = ? AND digest = ?", (user_id, digest))
        await self._changed()
        return bool(cursor.rowcount > 0)

    async def count_recovery_codes(self, user_id: int) -> int:
        rows = await self._read("SELECT COUNT(*) FROM recovery_codes WHERE user_id = ?", (user_id,))
        return int(rows[0][0])

    # --- tokens

    async def add_token(self, token: TokenRecord) -> None:
        async with self._transaction() as db:
            await db.execute(
                f"INSERT INTO tokens ({_TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token.digest, token.user_id, token.name, ",".join(sorted(token.roles)), token.created_at,
                 token.expires_at, token.last_used, token.last_client),
            )
        await self._changed()

    async def get_token(self, digest: str) -> TokenRecord | None:
        rows = await self._read(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE digest = ?", (digest,))
        return _token(rows[0]) if rows else None

    async def list_tokens(self, user_id: int | None = None) -> list[TokenRecord]:
        if user_id is None:
            rows = await self._read(f"SELECT {_TOKEN_COLUMNS} FROM tokens ORDER BY created_at")
        else:
            rows = await self._read(f"SELECT {_TOKEN_COLUMNS} FROM tokens WHERE user_id = ? ORDER BY created_at",
                                    (user_id,))
        return [_token(row) for row in rows]

    async def revoke_token(self, digest_prefix: str) -> int:
        # A short id names one token; an ambiguous or empty prefix revokes nothing.
        if len(digest_prefix) < 8 or any(c not in "0123456789abcdef" for c in digest_prefix):
            return 0
        async with self._transaction() as db:
            rows = list(await db.execute_fetchall(
                "SELECT digest FROM tokens WHERE substr(digest, 1, ?) = ?", (len(digest_prefix), digest_prefix)))
            if len(rows) != 1:
                return 0
            await db.execute("DELETE FROM tokens WHERE digest = ?", (rows[0][0],))
        await self._changed()
        return 1

    async def revoke_user_tokens(self, user_id: int) -> int:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM tokens WHERE user_id = ?", (user_id,))
        await self._changed()
        return cursor.rowcount

    async def touch_tokens(self, used: Mapping[str, tuple[float, str]]) -> None:
        # The last-use clock is not a change anyone must see at once: no trigger, no feed bump.
        if not used:
            return
        async with self._transaction() as db:
            await db.executemany(
                # Both sides of SET read the old row: the address follows the clock, which never moves back.
                "UPDATE tokens SET last_used = max(last_used, ?),"
                " last_client = CASE WHEN ? >= last_used THEN ? ELSE last_client END WHERE digest = ?",
                [(when, when, client, digest) for digest, (when, client) in used.items()],
            )

    # --- sessions

    async def create_session(
        self, id_hash: str, user_id: int, now: float, client: str, user_agent: str,
        *, persistent: bool = False, binding: str = "", mfa: str = "",
    ) -> None:
        if mfa not in SESSION_MFA:
            raise ValueError(f"unknown second factor kind {mfa!r}")
        async with self._transaction() as db:
            await db.execute(
                "INSERT INTO sessions (id_hash, user_id, created_at, auth_time, last_seen, client, user_agent,"
                " persistent, binding, mfa) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (id_hash, user_id, now, now, now, client, user_agent, int(persistent), binding, mfa),
            )
        await self._changed()

    async def _sessions(self, where: str, params: tuple[object, ...]) -> list[SessionRecord]:
        rows = await self._read(f"SELECT {_SESSION_COLUMNS} FROM sessions {where}", params)
        return [_session(row) for row in rows]

    async def get_session(self, id_hash: str) -> SessionRecord | None:
        found = await self._sessions("WHERE id_hash = ?", (id_hash,))
        return found[0] if found else None

    async def list_sessions(self, user_id: int | None = None) -> list[SessionRecord]:
        if user_id is None:
            return await self._sessions("ORDER BY created_at, id_hash", ())
        return await self._sessions("WHERE user_id = ? ORDER BY created_at, id_hash", (user_id,))

    async def count_sessions(self, *, created_after: float, seen_after: float) -> dict[int, int]:
        rows = await self._read(
            "SELECT user_id, COUNT(*) FROM sessions WHERE created_at >= ? AND last_seen >= ? GROUP BY user_id",
            (created_after, seen_after),
        )
        return {int(row[0]): int(row[1]) for row in rows}

    async def find_sessions(self, id_prefix: str) -> list[SessionRecord]:
        if not id_prefix or not all(c in "0123456789abcdef" for c in id_prefix):
            return []
        return await self._sessions("WHERE id_hash >= ? AND id_hash < ? ORDER BY id_hash", (id_prefix, id_prefix + "g"))

    async def touch_session(self, id_hash: str, now: float) -> None:
        await self.touch_sessions({id_hash: now})

    async def touch_sessions(self, seen: Mapping[str, float]) -> None:
        if not seen:
            return
        async with self._transaction() as db:
            await db.executemany(_TOUCH, [(now, id_hash) for id_hash, now in seen.items()])

    async def delete_session(self, id_hash: str) -> bool:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))
        await self._changed()
        return bool(cursor.rowcount > 0)

    async def delete_user_sessions(self, user_id: int, *, keep: str | None = None) -> int:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM sessions WHERE user_id = ? AND id_hash != ?", (user_id, keep or ""))
        await self._changed()
        return int(cursor.rowcount)

    async def delete_all_sessions(self) -> int:
        async with self._transaction() as db:
            cursor = await db.execute("DELETE FROM sessions")
        await self._changed()
        return int(cursor.rowcount)

    # --- audit

    async def add_audit(self, records: list[AuditRecord]) -> None:
        if not records:
            return
        async with self._transaction() as db:
            await db.executemany(
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
        rows = await self._read(
            f"SELECT time, event, user, client, detail FROM (SELECT * FROM audit {where} ORDER BY time DESC, id DESC"
            f" LIMIT ?) ORDER BY time, id",
            (*params, limit),
        )
        return [AuditRecord(float(r[0]), str(r[1]), r[2], r[3], str(r[4])) for r in rows]

    async def export_audit(self, *, offset: int, limit: int) -> list[AuditRecord]:
        rows = await self._read("SELECT time, event, user, client, detail FROM audit ORDER BY time, id LIMIT ? OFFSET ?",
                                (limit, offset))
        return [AuditRecord(float(r[0]), str(r[1]), r[2], r[3], str(r[4])) for r in rows]

    # --- sign-in throttling

    async def get_throttle(self, keys: list[str]) -> dict[str, ThrottleState]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = await self._read(f"SELECT key, failures, last_failure FROM throttle WHERE key IN ({marks})", keys)
        return {str(r[0]): ThrottleState(int(r[1]), float(r[2])) for r in rows}

    async def record_failure(self, keys: list[str], now: float, window: float) -> None:
        async with self._transaction() as db:
            await db.executemany(_RECORD_FAILURE, [(key, now, now, window, now) for key in keys])

    async def reserve_attempt(self, rules: Mapping[str, BackOff], now: float, window: float) -> float:
        # Read and written in one IMMEDIATE transaction: the check and the reservation are one step
        # even across worker processes sharing the file. The rules are data, evaluated here.
        keys = list(rules)
        async with self._transaction() as db:
            marks = ",".join("?" * len(keys))
            rows = await db.execute_fetchall(
                f"SELECT key, failures, last_failure FROM throttle WHERE key IN ({marks})", keys
            )
            states = {str(r[0]): ThrottleState(int(r[1]), float(r[2])) for r in rows}
            seconds = wait_needed(rules, states, now, window)
            if seconds <= 0:
                await db.executemany(_RECORD_FAILURE, [(key, now, now, window, now) for key in keys])
        return seconds

    async def release_attempt(self, keys: list[str]) -> None:
        async with self._transaction() as db:
            await db.executemany(
                "UPDATE throttle SET failures = max(failures - 1, 0) WHERE key = ?", [(key,) for key in keys]
            )

    async def clear_throttle(self, keys: list[str]) -> None:
        async with self._transaction() as db:
            await db.executemany("DELETE FROM throttle WHERE key = ?", [(key,) for key in keys])
