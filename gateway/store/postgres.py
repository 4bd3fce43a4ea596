"""PostgreSQL users and audit trail (``[store] users = "postgresql://..."``), shared by any number of
gateway replicas, and the change feed that tells every replica of a change within a second.

Every write to ``gateway_users`` (through this store, another replica, or an operator's own SQL) fires
a statement trigger that bumps the one-row counter ``gateway_changes`` and NOTIFYs its new value, in
the writer's transaction: the notification leaves at commit. Each process follows the counter on a
connection of its own (``PostgresFeed``): a notification wakes it to read the counter at once, and it
reads it anyway every ``HEARTBEAT`` seconds, which both catches up after a reconnect (notifications
sent while disconnected are lost) and proves the connection alive. (The value is only ever read from
the table: any role that can connect may NOTIFY on the channel, and a forged huge value must not
freeze every mark.) A feed whose last heartbeat is older
than ``STALE_AFTER`` answers ``mark()`` None, so no session cache trusts its rows meanwhile.

Requests run on a small asyncpg pool; every call is bounded by ``TIMEOUT`` (a hung server gets a 503,
not a hung request), and every asyncpg, socket and timeout exception becomes ``StoreUnavailable`` here,
one line naming host:port and never the password (a duplicate name is ``DuplicateUser``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from gateway.background import BackgroundTask
from gateway.store.base import (
    AuditRecord,
    ChangeFeed,
    DuplicateUser,
    Factor,
    StoreError,
    StoreUnavailable,
    TokenRecord,
    UnknownUser,
    User,
)
from gateway.store.feed import CombinedFeed, SharedCounter

__all__ = ["FEED_NAME", "HEARTBEAT", "POOL_NAME", "STALE_AFTER", "TIMEOUT", "PostgresFeed", "PostgresUserStore"]

TIMEOUT = 2.0  # seconds: connecting, each statement, and a whole call including the wait for a connection
POOL_SIZE = 4  # connections per process at most: replicas x workers x this must fit max_connections
HEARTBEAT = 0.25  # seconds between reads of the change counter on the feed's connection
STALE_AFTER = 0.6  # a feed not heard from for this long cannot vouch for any cached row
RECONNECT = (0.05, 1.0)  # the feed's first and longest wait between reconnection attempts
CHANNEL = "gateway_changes"
POOL_NAME, FEED_NAME = "gateway", "gateway feed"  # application_name of each kind of connection
SCHEMA_LOCK = 0x67617465_77617901  # pg_advisory_xact_lock key: one process creates the schema at a time

log = logging.getLogger("gateway.store")

# Names compare as SQLite's NOCASE does: ASCII letters folded, everything else byte for byte (the "C"
# collation's lower() folds ASCII only, and its order is the bytes' order).
_FOLD = 'lower({} COLLATE "C")'
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS gateway_users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused: a stray session names nobody
    name text NOT NULL,
    password_hash text NOT NULL,
    roles text[] NOT NULL DEFAULT '{{}}',  -- sorted
    disabled boolean NOT NULL DEFAULT false,
    created_at double precision NOT NULL,
    password_changed_at double precision NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS gateway_users_name ON gateway_users ({_FOLD.format("name")});
CREATE TABLE IF NOT EXISTS gateway_audit (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    time double precision NOT NULL,
    event text NOT NULL,
    user_name text,
    client text,
    detail text NOT NULL DEFAULT '{{}}'  -- a JSON object, kept as written
);
CREATE INDEX IF NOT EXISTS gateway_audit_time ON gateway_audit (time);
CREATE INDEX IF NOT EXISTS gateway_audit_user ON gateway_audit ({_FOLD.format("user_name")}, time);
-- Starts from the clock in microseconds: a counter made again never goes back to a value running
-- processes have seen (their marks would stand still).
CREATE TABLE IF NOT EXISTS gateway_changes (id integer PRIMARY KEY CHECK (id = 1), n bigint NOT NULL);
INSERT INTO gateway_changes (id, n) VALUES (1, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
    ON CONFLICT (id) DO NOTHING;
CREATE OR REPLACE FUNCTION gateway_users_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    bumped bigint;
BEGIN
    UPDATE gateway_changes SET n = n + 1 WHERE id = 1 RETURNING n INTO bumped;
    PERFORM pg_notify('{CHANNEL}', bumped::text);  -- the value is for people LISTENing in psql
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS gateway_users_changed ON gateway_users;
CREATE TRIGGER gateway_users_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gateway_users
    FOR EACH STATEMENT EXECUTE FUNCTION gateway_users_changed();
"""
# --- factors: tables added after the first release, so created on open for a database made before
# them (under the same advisory lock), each change bumping the same counter as the users.
_FACTOR_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_factors (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id bigint NOT NULL,
    kind text NOT NULL,
    name text NOT NULL,
    secret text NOT NULL,
    created_at double precision NOT NULL,
    last_used double precision NOT NULL DEFAULT 0,
    last_step bigint NOT NULL DEFAULT -1  -- the last TOTP step accepted: single use across replicas
);
CREATE INDEX IF NOT EXISTS gateway_factors_user ON gateway_factors (user_id);
CREATE TABLE IF NOT EXISTS gateway_recovery_codes (
    user_id bigint NOT NULL,
    digest text NOT NULL,
    created_at double precision NOT NULL,
    PRIMARY KEY (user_id, digest)
);
DROP TRIGGER IF EXISTS gateway_factors_changed ON gateway_factors;
CREATE TRIGGER gateway_factors_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON gateway_factors
    FOR EACH STATEMENT EXECUTE FUNCTION gateway_users_changed();
DROP TRIGGER IF EXISTS gateway_recovery_codes_changed ON gateway_recovery_codes;
CREATE TRIGGER gateway_recovery_codes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON gateway_recovery_codes FOR EACH STATEMENT EXECUTE FUNCTION gateway_users_changed();
"""
_FACTOR_COLUMNS = "id, user_id, kind, name, secret, created_at, last_used"
# --- tokens: a step of its own, so databases made before it gain the table on open (schema lock held)
_TOKENS_SCHEMA = """
CREATE TABLE IF NOT EXISTS gateway_tokens (
    digest text PRIMARY KEY,
    user_id bigint NOT NULL,
    name text NOT NULL,
    roles text[] NOT NULL DEFAULT '{}',  -- sorted
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL,
    last_used double precision NOT NULL DEFAULT 0,
    last_client text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS gateway_tokens_user ON gateway_tokens (user_id);
-- A deleted user's tokens die with it, in the same transaction.
CREATE OR REPLACE FUNCTION gateway_user_tokens_gone() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    DELETE FROM gateway_tokens WHERE user_id = OLD.id;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS gateway_user_tokens_gone ON gateway_users;
CREATE TRIGGER gateway_user_tokens_gone AFTER DELETE ON gateway_users
    FOR EACH ROW EXECUTE FUNCTION gateway_user_tokens_gone();
DROP TRIGGER IF EXISTS gateway_tokens_changed ON gateway_tokens;
CREATE TRIGGER gateway_tokens_changed AFTER INSERT OR DELETE OR TRUNCATE ON gateway_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION gateway_users_changed();
"""
_TOKEN_COLUMNS = "digest, user_id, name, roles, created_at, expires_at, last_used, last_client"


def _token(row: Any) -> TokenRecord:
    return TokenRecord(str(row[0]), int(row[1]), str(row[2]), tuple(row[3]), float(row[4]), float(row[5]),
                       float(row[6]), str(row[7]))


_USER_COLUMNS = "id, name, password_hash, roles, disabled, created_at, password_changed_at"
_COUNTER = "SELECT n FROM gateway_changes WHERE id = 1"

# What asyncpg, the socket and the clock raise; all of it means "not now" to a caller.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError,
                  TimeoutError, ValueError)

T = TypeVar("T")


def _describe(url: str) -> str:
    """Where ``url`` points, for messages: host, port and database, never the user or password."""
    parts = urlsplit(url)
    try:
        host = parts.hostname or os.environ.get("PGHOST", "localhost")
        port = parts.port or int(os.environ.get("PGPORT", "5432"))
    except ValueError:  # a bad port, several hosts: show them as written
        return f"PostgreSQL at {parts.netloc.rpartition('@')[2]}{parts.path}"
    return f"PostgreSQL at {f'[{host}]' if ':' in host else host}:{port}{parts.path}"


def _secrets(url: str) -> list[str]:
    """The password in ``url`` as it may appear in a message (as written and decoded)."""
    parts = urlsplit(url)
    found = [parts.password or "", unquote(parts.password or "")]
    found += parse_qs(parts.query).get("password", [])
    return [secret for secret in found if secret]


def _named(url: str, name: str) -> dict[str, str]:
    """The connection's application_name (what pg_stat_activity shows), unless the URL gives one."""
    return {} if "application_name" in parse_qs(urlsplit(url).query) else {"application_name": name}


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT:g} s"
    if isinstance(exc, ValueError) and not isinstance(exc, asyncpg.InterfaceError):
        return f"bad URL: {exc}"  # urllib's or asyncpg's parsing, e.g. a port that is no number
    return str(exc) or type(exc).__name__


def _factor(row: Any) -> Factor:
    return Factor(id=int(row[0]), user_id=int(row[1]), kind=str(row[2]), name=str(row[3]), secret=str(row[4]),
                  created_at=float(row[5]), last_used=float(row[6]))


def _user(row: Any) -> User:
    return User(id=int(row[0]), name=str(row[1]), password_hash=str(row[2]), roles=tuple(row[3]),
                disabled=bool(row[4]), created_at=float(row[5]), password_changed_at=float(row[6]))


async def _keep_session(conn: Any) -> None:
    """The pool's reset on release: nothing. Our statements leave no session state behind (no SET,
    no LISTEN, no cursors, transaction-scoped locks only; an open transaction is still rolled back
    by asyncpg), and asyncpg's default reset would add a round trip to every call."""


class _Conflict(StoreError):
    """A unique index refused the write (a duplicate name): the caller says which."""


class _Messages:
    """One-line messages about one server, with the URL's password masked out."""

    def __init__(self, url: str) -> None:
        self.where = _describe(url)
        self._secrets = _secrets(url)

    def say(self, doing: str, exc: BaseException) -> str:
        text = f"{self.where}: {doing}: {_reason(exc)}"
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return " ".join(text.split())


class PostgresFeed:
    """A ``ChangeFeed`` over ``gateway_changes``, read on a connection of its own whenever a
    notification says it moved, and every ``HEARTBEAT`` seconds anyway (the catch-up after a
    reconnect, and the proof that the connection is alive). ``mark()`` reads memory only."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._messages = _Messages(url)
        self._seen: int | None = None  # the newest counter value read (never goes back)
        self._own = 0  # this process's own writes, in its mark at once (before their notification)
        self._fresh_at = -math.inf  # monotonic time the last successful heartbeat was sent
        self._conn: Any = None  # the listening connection (asyncpg.Connection), None while cut off
        self._lost = False  # an outage is under way (logged once, and once when it ends)
        self._notified = asyncio.Event()  # the counter moved: read it now, not at the next heartbeat
        self._task = BackgroundTask("postgres-change-feed", self._follow)

    def mark(self) -> int | None:
        if self._seen is None or time.monotonic() - self._fresh_at > STALE_AFTER:
            return None
        return self._seen + self._own

    async def publish(self) -> None:
        # The write is committed: its trigger notified every replica. This process need not wait for
        # its own notification (nor can the call then fail after the change is made).
        self._own += 1

    async def open(self) -> None:
        self._notified = asyncio.Event()  # of the loop that opens it (a store may be opened again)
        self._conn = await self._listen()
        self._task.start()

    async def close(self) -> None:
        await self._task.stop()
        conn, self._conn = self._conn, None
        self._fresh_at = -math.inf
        if conn is not None:
            with contextlib.suppress(*_DRIVER_ERRORS):
                await conn.close(timeout=TIMEOUT)
            conn.terminate()  # a no-op once closed

    def _advance(self, value: int) -> None:
        if self._seen is None or value > self._seen:
            self._seen = value

    def _wake(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        self._notified.set()

    def _cut(self, conn: Any) -> None:
        """The listening connection ended (killed, server gone): stale now, not STALE_AFTER later."""
        if conn is self._conn:
            self._fresh_at = -math.inf

    async def _listen(self) -> Any:
        """A new listening connection, caught up; ``StoreUnavailable`` when it cannot be made."""
        conn: Any = None
        try:
            conn = await asyncpg.connect(self._url, timeout=TIMEOUT, command_timeout=TIMEOUT,
                                         server_settings=_named(self._url, FEED_NAME))
            conn.add_termination_listener(self._cut)
            # LISTEN before the first read: a change committed in between is then in one or the other.
            await conn.add_listener(CHANNEL, self._wake)
            await self._heartbeat(conn)
        except (StoreError, *_DRIVER_ERRORS) as exc:
            if conn is not None:
                conn.terminate()
            raise StoreUnavailable(self._messages.say("cannot follow changes", exc)) from exc
        return conn

    async def _heartbeat(self, conn: Any) -> None:
        sent = time.monotonic()  # the value read is at least this fresh
        value = await conn.fetchval(_COUNTER, timeout=TIMEOUT)
        if value is None:
            raise StoreUnavailable(f"{self._messages.where}: the change counter is missing")
        self._advance(int(value))
        if not conn.is_closed():
            self._fresh_at = sent

    async def _follow(self) -> None:
        """The background task: heartbeats while connected; reconnects, backing off, while not."""
        delay = RECONNECT[0]
        while True:
            if self._conn is None:
                await asyncio.sleep(delay)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(HEARTBEAT):
                        await self._notified.wait()
            self._notified.clear()  # before the read: a notification arriving during it means read again
            try:
                if self._conn is None:
                    self._conn = await self._listen()
                    if self._lost:
                        log.info("%s: following changes again", self._messages.where)
                else:
                    await self._heartbeat(self._conn)
                self._lost, delay = False, RECONNECT[0]
            except StoreUnavailable as exc:  # no new connection: wait longer each time
                self._gone(str(exc))
                delay = min(delay * 2, RECONNECT[1])
            except Exception as exc:  # the connection broke (or worse): a new one at once, the task lives on
                self._gone(self._messages.say("change feed lost", exc))
                delay = RECONNECT[0]

    def _gone(self, message: str) -> None:
        if not self._lost:
            log.warning("%s (sessions are read from the stores until it is back)", message)
            self._lost = True
        self._disconnect()

    def _disconnect(self) -> None:
        """Forget the listening connection: stale at once."""
        conn, self._conn = self._conn, None
        self._fresh_at = -math.inf
        if conn is not None:
            conn.terminate()  # no I/O: never waits on a server that may be hung


class PostgresUserStore:
    """Users and the audit trail in PostgreSQL (tables ``gateway_users``, ``gateway_audit``,
    ``gateway_changes``), with SqliteStore's semantics. ``feed`` follows the change counter; with
    ``counter`` (a SharedCounter file) it also bumps that, so this machine's other processes see this
    process's writes at once rather than at their notification."""

    def __init__(self, url: str, *, counter: Path | None = None) -> None:
        self._url = url
        self._messages = _Messages(url)
        self._changes = PostgresFeed(url)
        self.feed: ChangeFeed = self._changes if counter is None else CombinedFeed([SharedCounter(counter), self._changes])
        self._pool: Any = None  # asyncpg.Pool once open

    def __repr__(self) -> str:
        return f"PostgresUserStore({self._messages.where!r})"  # never the URL: it may hold the password

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self._url, min_size=1, max_size=POOL_SIZE, timeout=TIMEOUT, command_timeout=TIMEOUT,
                reset=_keep_session, server_settings=_named(self._url, POOL_NAME))
            await self._call(self._create_schema, "cannot create the tables")
            await self.feed.open()
        except (StoreError, *_DRIVER_ERRORS) as exc:
            await self.close()
            message = str(exc) if isinstance(exc, StoreError) else self._messages.say("cannot open the store", exc)
            raise StoreUnavailable(message) from exc  # our StoreErrors' messages are one line already

    @staticmethod
    async def _create_schema(conn: Any) -> None:
        # Replicas and workers start at once: one of them creates the schema, the others wait for
        # it and find it made (one transaction: the counter table exists only with all the rest).
        # A made schema takes no DDL lock at all, and needs no CREATE privilege.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
            if await conn.fetchval("SELECT to_regclass('gateway_changes')") is None:
                await conn.execute(_SCHEMA)
            if await conn.fetchval("SELECT to_regclass('gateway_recovery_codes')") is None:
                await conn.execute(_FACTOR_SCHEMA)
            if await conn.fetchval("SELECT to_regclass('gateway_tokens')") is None:
                await conn.execute(_TOKENS_SCHEMA)

    async def close(self) -> None:
        await self.feed.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), TIMEOUT)
            except Exception:  # a server gone or hung: drop the connections without a goodbye
                pool.terminate()

    async def ping(self) -> bool:
        try:
            return bool(await self._fetchval("SELECT 1") == 1)
        except StoreError:
            return False

    async def _call(self, action: Callable[[Any], Awaitable[T]], doing: str = "the store cannot be reached") -> T:
        """``action`` on a pooled connection, the whole of it (waiting for a connection included)
        bounded by TIMEOUT, asyncpg's exceptions translated."""
        if self._pool is None:
            raise StoreUnavailable(f"{self._messages.where}: the store is not open")
        pool = self._pool
        try:
            async with asyncio.timeout(TIMEOUT):
                conn = await pool.acquire()
                try:
                    return await action(conn)
                except asyncpg.PostgresError:
                    raise  # the server refused a statement: the connection is as good as before
                except BaseException:
                    # Left mid-statement (timed out, cancelled, broken): dropped at once. asyncpg's own
                    # release would first wait (unbounded by our timeout) for the server to cancel it.
                    conn.terminate()
                    raise
                finally:
                    await pool.release(conn)
        except asyncpg.UniqueViolationError as exc:
            raise _Conflict(self._messages.say(doing, exc)) from exc
        except _DRIVER_ERRORS as exc:
            raise StoreUnavailable(self._messages.say(doing, exc)) from exc

    async def _fetch(self, sql: str, *params: object) -> list[Any]:
        return await self._call(lambda conn: conn.fetch(sql, *params), "cannot read")

    async def _fetchval(self, sql: str, *params: object) -> Any:
        return await self._call(lambda conn: conn.fetchval(sql, *params), "cannot read")

    async def _write(self, sql: str, *params: object) -> str:
        """One statement (atomic on its own); its status ("UPDATE 1"). Published before returning."""
        try:
            return await self._call(lambda conn: conn.execute(sql, *params), "cannot write")
        finally:
            # Also after a failure: the statement may have been committed before the answer was lost.
            await self.feed.publish()

    # --- users

    async def add_user(self, name: str, password_hash: str, roles: tuple[str, ...], now: float) -> User:
        try:
            rows = await self._call(lambda conn: conn.fetch(
                f"INSERT INTO gateway_users (name, password_hash, roles, created_at) VALUES ($1, $2, $3, $4)"
                f" RETURNING {_USER_COLUMNS}", name, password_hash, sorted(roles), now), "cannot write")
        except _Conflict:
            raise DuplicateUser(f"user {name!r} already exists") from None
        finally:
            await self.feed.publish()
        return _user(rows[0])

    async def import_users(self, users: list[User]) -> None:
        rows = [(u.id, u.name, u.password_hash, sorted(u.roles), u.disabled, u.created_at, u.password_changed_at)
                for u in users]

        async def insert(conn: Any) -> None:
            async with conn.transaction():
                await conn.executemany(f"INSERT INTO gateway_users ({_USER_COLUMNS}) OVERRIDING SYSTEM VALUE"
                                       " VALUES ($1, $2, $3, $4, $5, $6, $7)", rows)
                # New ids continue after the copied ones (an identity column does not look).
                await conn.execute("SELECT setval(pg_get_serial_sequence('gateway_users', 'id'),"
                                   " greatest((SELECT max(id) FROM gateway_users), 1))")

        try:
            await self._call(insert, "cannot write")
        except _Conflict:
            raise DuplicateUser("a user of that name or id already exists") from None
        finally:
            await self.feed.publish()

    async def get_user(self, name: str) -> User | None:
        rows = await self._fetch(f"SELECT {_USER_COLUMNS} FROM gateway_users WHERE {_by_name(1)}", name)
        return _user(rows[0]) if rows else None

    async def get_user_by_id(self, user_id: int) -> User | None:
        rows = await self._fetch(f"SELECT {_USER_COLUMNS} FROM gateway_users WHERE id = $1", user_id)
        return _user(rows[0]) if rows else None

    async def list_users(self) -> list[User]:
        rows = await self._fetch(f"SELECT {_USER_COLUMNS} FROM gateway_users ORDER BY {_FOLD.format('name')}")
        return [_user(row) for row in rows]

    async def _update_user(self, name: str, sql: str, *params: object) -> None:
        """``sql``'s last parameter is the name (``WHERE`` + ``_by_name``)."""
        status = await self._write(sql, *params, name)
        if status.endswith(" 0"):
            raise UnknownUser(f"no user named {name!r}")

    async def set_password_hash(self, name: str, password_hash: str, *, changed_at: float | None = None) -> None:
        if changed_at is None:
            await self._update_user(name, f"UPDATE gateway_users SET password_hash = $1 WHERE {_by_name(2)}",
                                    password_hash)
        else:
            await self._update_user(
                name, f"UPDATE gateway_users SET password_hash = $1, password_changed_at = $2 WHERE {_by_name(3)}",
                password_hash, changed_at)

    async def set_roles(self, name: str, roles: tuple[str, ...]) -> None:
        await self._update_user(name, f"UPDATE gateway_users SET roles = $1 WHERE {_by_name(2)}", sorted(roles))

    async def set_disabled(self, name: str, disabled: bool) -> None:
        await self._update_user(name, f"UPDATE gateway_users SET disabled = $1 WHERE {_by_name(2)}", disabled)

    async def delete_user(self, name: str) -> None:
        # Only the user: its sessions are the session store's (Accounts.delete ends them).
        await self._update_user(name, f"DELETE FROM gateway_users WHERE {_by_name(1)}")

    # --- factors

    async def add_factor(self, user_id: int, kind: str, name: str, secret: str, now: float) -> Factor:
        try:
            rows = await self._call(lambda conn: conn.fetch(
                f"INSERT INTO gateway_factors (user_id, kind, name, secret, created_at) VALUES ($1, $2, $3, $4, $5)"
                f" RETURNING {_FACTOR_COLUMNS}", user_id, kind, name, secret, now), "cannot write")
        finally:
            await self.feed.publish()
        return _factor(rows[0])

    async def list_factors(self, user_id: int) -> list[Factor]:
        rows = await self._fetch(f"SELECT {_FACTOR_COLUMNS} FROM gateway_factors WHERE user_id = $1 ORDER BY id",
                                 user_id)
        return [_factor(row) for row in rows]

    async def delete_factor(self, user_id: int, factor_id: int) -> bool:
        status = await self._write("DELETE FROM gateway_factors WHERE id = $1 AND user_id = $2", factor_id, user_id)
        return not status.endswith(" 0")

    async def delete_factors(self, user_id: int) -> int:
        async def delete(conn: Any) -> int:
            async with conn.transaction():
                status = await conn.execute("DELETE FROM gateway_factors WHERE user_id = $1", user_id)
                await conn.execute("DELETE FROM gateway_recovery_codes WHERE user_id = $1", user_id)
            return int(str(status).rsplit(" ", 1)[-1])

        try:
            return await self._call(delete, "cannot write")
        finally:
            await self.feed.publish()

    async def use_totp_step(self, user_id: int, factor_id: int, step: int, now: float) -> bool:
        # One conditional UPDATE: the row lock makes a second offer of the same step (from any
        # replica) wait for the first and then find last_step no longer below it.
        status = await self._write(
            "UPDATE gateway_factors SET last_step = $1, last_used = greatest(last_used, $2)"
            " WHERE id = $3 AND user_id = $4 AND kind = 'totp' AND last_step < $1", step, now, factor_id, user_id)
        return not status.endswith(" 0")

    async def set_recovery_codes(self, user_id: int, digests: list[str], now: float) -> None:
        async def replace(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute("DELETE FROM gateway_recovery_codes WHERE user_id = $1", user_id)
                await conn.executemany("INSERT INTO gateway_recovery_codes (user_id, digest, created_at)"
                                       " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                                       [(user_id, digest, now) for digest in digests])

        try:
            await self._call(replace, "cannot write")
        finally:
            await self.feed.publish()

    async def use_recovery_code(self, user_id: int, digest: str, now: float) -> bool:
        status = await self._write("DELETE FROM gateway_recovery_codes WHERE user_id = $1 AND digest = $2",
                                   user_id, digest)
        return not status.endswith(" 0")

    async def count_recovery_codes(self, user_id: int) -> int:
        return int(await self._fetchval("SELECT count(*) FROM gateway_recovery_codes WHERE user_id = $1", user_id))

    # --- tokens

    async def add_token(self, token: TokenRecord) -> None:
        await self._write(f"INSERT INTO gateway_tokens ({_TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                          token.digest, token.user_id, token.name, sorted(token.roles), token.created_at,
                          token.expires_at, token.last_used, token.last_client)

    async def get_token(self, digest: str) -> TokenRecord | None:
        rows = await self._fetch(f"SELECT {_TOKEN_COLUMNS} FROM gateway_tokens WHERE digest = $1", digest)
        return _token(rows[0]) if rows else None

    async def list_tokens(self, user_id: int | None = None) -> list[TokenRecord]:
        if user_id is None:
            rows = await self._fetch(f"SELECT {_TOKEN_COLUMNS} FROM gateway_tokens ORDER BY created_at, digest")
        else:
            rows = await self._fetch(
                f"SELECT {_TOKEN_COLUMNS} FROM gateway_tokens WHERE user_id = $1 ORDER BY created_at, digest", user_id)
        return [_token(row) for row in rows]

    async def revoke_token(self, digest_prefix: str) -> int:
        # A short id names one token; an ambiguous or too short prefix revokes nothing (one statement).
        if len(digest_prefix) < 8 or any(c not in "0123456789abcdef" for c in digest_prefix):
            return 0
        status = await self._write(
            "DELETE FROM gateway_tokens WHERE left(digest, $1) = $2"
            " AND (SELECT count(*) FROM gateway_tokens WHERE left(digest, $1) = $2) = 1",
            len(digest_prefix), digest_prefix)
        return int(status.split()[-1])

    async def revoke_user_tokens(self, user_id: int) -> int:
        status = await self._write("DELETE FROM gateway_tokens WHERE user_id = $1", user_id)
        return int(status.split()[-1])

    async def touch_tokens(self, used: Mapping[str, tuple[float, str]]) -> None:
        # The last-use clock is no change anyone must see at once: no trigger fires, nothing published.
        if not used:
            return
        rows = [(digest, when, client) for digest, (when, client) in used.items()]
        await self._call(lambda conn: conn.executemany(
            "UPDATE gateway_tokens SET last_used = greatest(last_used, $2),"
            " last_client = CASE WHEN $2 >= last_used THEN $3 ELSE last_client END WHERE digest = $1", rows),
            "cannot write")

    # --- audit

    async def add_audit(self, records: list[AuditRecord]) -> None:
        if not records:
            return
        rows = [(r.time, r.event, r.user, r.client, r.detail) for r in records]
        # executemany is one transaction: the batch is stored whole or not at all.
        await self._call(lambda conn: conn.executemany(
            "INSERT INTO gateway_audit (time, event, user_name, client, detail) VALUES ($1, $2, $3, $4, $5)", rows),
            "cannot write the audit trail")

    async def list_audit(
        self, *, user: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[AuditRecord]:
        clauses: list[str] = []
        params: list[object] = []
        if user is not None:
            params.append(user)
            clauses.append(f"{_FOLD.format('user_name')} = {_FOLD.format(f'${len(params)}')}")
        if since is not None:
            params.append(since)
            clauses.append(f"time >= ${len(params)}")
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        params.append(limit if limit >= 0 else None)  # as SQLite: a negative limit is none
        rows = await self._fetch(
            f"SELECT time, event, user_name, client, detail FROM (SELECT * FROM gateway_audit {where}"
            f" ORDER BY time DESC, id DESC LIMIT ${len(params)}) AS newest ORDER BY time, id", *params)
        return [AuditRecord(float(r[0]), str(r[1]), r[2], r[3], str(r[4])) for r in rows]


    async def export_audit(self, *, offset: int, limit: int) -> list[AuditRecord]:
        rows = await self._fetch("SELECT time, event, user_name, client, detail FROM gateway_audit"
                                 " ORDER BY time, id LIMIT $1 OFFSET $2", limit, offset)
        return [AuditRecord(float(r[0]), str(r[1]), r[2], r[3], str(r[4])) for r in rows]


def _by_name(param: int) -> str:
    """``WHERE`` on a user's name given as parameter ``param``, folded as the unique index is."""
    return f"{_FOLD.format('name')} = {_FOLD.format(f'${param}')}"
