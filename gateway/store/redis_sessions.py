"""Sessions and sign-in throttle counters in Redis, shared by any number of gateway replicas.

Keys (each after the URL's prefix, "gateway:" by default):
- ``session:<id_hash>``: a hash per session (the store only ever sees SHA-256 hashes of ids);
- ``user:<user_id>``: the set of a user's session hashes, so revoking them all is one step;
- ``sessions``: every session hash, scored by its last_seen (listing, counting, revoking all);
- ``changes``: the change stream (store/redis_feed.py), ``epoch``: the wipe detector;
- ``throttle:<key>``: a hash per throttle counter (failures, last), expiring after the window.

Every change touching more than one key is one Lua script, so it is atomic, and the scripts that
change sessions add their stream entry in the same step; the caller returns once this process's
feed shows the entry (and, with ``counter``, once the machine's shared counter moved, so sibling
workers need not wait for their own readers). The idle clock's last_seen refreshes change nothing
anyone caches and are not announced (as in SqliteStore).

Sessions and user sets expire by themselves ``SESSION_TTL`` after their last write (creation or an
idle-clock refresh): no cookie can name a session idle that long, so the expiry never ends a live
session, and a session nobody used or ended does not stay in Redis forever. Index entries left
behind are dropped by the next listing that meets them.

A session record that cannot be read back exactly (a missing or unparsable field, a key of another
type) raises ``StoreError``: it is never taken for a valid session.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from gateway.store import redis_scripts as lua
from gateway.store.base import (
    SESSION_MFA,
    BackOff,
    ChangeFeed,
    SessionRecord,
    StoreError,
    StoreUnavailable,
    ThrottleState,
)
from gateway.store.feed import CombinedFeed, SharedCounter
from gateway.store.redis_client import TIMEOUT, connect, parse_redis_url, translated
from gateway.store.redis_feed import BLOCK, MAXLEN, StreamFeed

__all__ = ["BULK_TIMEOUT", "FEED_CLIENT_NAME", "SESSION_TTL", "RedisSessionStore"]

# Browsers cap a cookie's lifetime at 400 days (RFC 6265bis), and a session idle longer than its
# idle timeout is dead anyway: a session untouched this long can never be used again.
SESSION_TTL = 400 * 24 * 3600
# Listings and bulk deletes read or end every session (the CLI, the start-up purge, the metrics
# count): tens of thousands take longer than a request may wait. No request waits on them.
BULK_TIMEOUT = 30.0
LIST_PAGE = 500  # sessions per listing round trip: a reply parsed in tens of milliseconds
THROTTLE_MARGIN = 1.0  # seconds a counter outlives its window, so the arithmetic decides, not the expiry
FEED_CLIENT_NAME = "gateway-feed"  # the change feed reader's connection, as CLIENT LIST shows it
SESSION_FIELDS = ("user_id", "created_at", "auth_time", "last_seen", "client", "user_agent", "persistent", "binding")


def _text(value: float) -> str:
    """A float as Lua and Python both read it back exactly."""
    if not math.isfinite(value):
        raise StoreError(f"not a finite number: {value!r}")
    return repr(float(value))


def _finite(text: object) -> float:
    if not isinstance(text, str):
        raise ValueError(f"not a number: {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"not a finite number: {text!r}")
    return value


def _whole(text: object) -> int:
    if not (isinstance(text, str) and text.isascii() and text.isdigit()):
        raise ValueError(f"not a whole number: {text!r}")
    return int(text)


def _count(value: object) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"not a count: {value!r}")
    return value


def _fields(reply: Any) -> dict[str, str]:
    """A hash as HGETALL gives it (a dict, or a flat list from a script), every value text."""
    if isinstance(reply, list) and len(reply) % 2 == 0:
        reply = dict(zip(reply[::2], reply[1::2], strict=True))
    if not isinstance(reply, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in reply.items()):
        raise ValueError("not a hash of text")
    return reply


def _session(id_hash: str, reply: Any) -> SessionRecord:
    """The record of session ``id_hash`` from its hash; StoreError unless every field reads back."""
    try:
        fields = _fields(reply)
        missing = [name for name in SESSION_FIELDS if name not in fields]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        if fields["persistent"] not in ("0", "1"):
            raise ValueError("persistent is neither 0 nor 1")
        # A session written before second factors has no mfa field: it passed none. Any value but
        # the known ones is damage, never read as a passed factor.
        mfa = fields.get("mfa", "")
        if mfa not in SESSION_MFA:
            raise ValueError("mfa is not a known second factor kind")
        return SessionRecord(
            id_hash=id_hash,
            user_id=_whole(fields["user_id"]),
            created_at=_finite(fields["created_at"]),
            auth_time=_finite(fields["auth_time"]),
            last_seen=_finite(fields["last_seen"]),
            client=fields["client"],
            user_agent=fields["user_agent"],
            persistent=fields["persistent"] == "1",
            binding=fields["binding"],
            mfa=mfa,
        )
    except ValueError as exc:
        raise StoreError(f"damaged session record {id_hash[:12]} in Redis: {exc}") from exc


def _page(reply: Any) -> tuple[str, list[SessionRecord]]:
    """The next cursor and the records of a LIST reply."""
    if (not isinstance(reply, list) or len(reply) % 2 != 1 or not isinstance(reply[0], str)
            or not all(isinstance(i, str) for i in reply[1::2])):
        raise StoreError("Redis answered a session listing that is not one")
    return reply[0], [_session(reply[i], reply[i + 1]) for i in range(1, len(reply), 2)]


class RedisSessionStore:
    """A ``SessionBackend`` in Redis: ``url`` is ``redis://[:password@]host:port/db[?prefix=P]`` (or
    ``rediss://``). ``counter``: the machine's shared change counter file (store/feed.py), bumped
    after each change so the other processes of this machine see it at once; without it they see
    it through their own stream readers, within a heartbeat."""

    def __init__(self, url: str, *, counter: Path | None = None) -> None:
        self._url = parse_redis_url(url)
        prefix = self._url.prefix
        self._prefix = prefix
        self._index = prefix + "sessions"
        self._stream = prefix + "changes"
        self._redis = connect(self._url)
        reader = connect(self._url, read_timeout=BLOCK + TIMEOUT, name=FEED_CLIENT_NAME, max_connections=1)
        self.stream = StreamFeed(self._redis, reader, stream=self._stream, epoch=prefix + "epoch")
        self._counter = SharedCounter(counter) if counter is not None else None
        self.feed: ChangeFeed = self.stream if self._counter is None else CombinedFeed([self._counter, self.stream])
        self._open = False
        script = self._redis.register_script  # EVALSHA, loaded again by itself after a restart
        self._create, self._touch, self._delete = script(lua.CREATE), script(lua.TOUCH), script(lua.DELETE)
        self._delete_user, self._delete_all = script(lua.DELETE_USER), script(lua.DELETE_ALL)
        self._list, self._count = script(lua.LIST), script(lua.COUNT)
        self._record_failure, self._reserve = script(lua.RECORD_FAILURE), script(lua.RESERVE)
        self._release = script(lua.RELEASE)

    def _session_key(self, id_hash: str) -> str:
        return f"{self._prefix}session:{id_hash}"

    def _user_key(self, user_id: int) -> str:
        return f"{self._prefix}user:{user_id}"

    def _throttle_keys(self, keys: list[str]) -> list[str]:
        return [f"{self._prefix}throttle:{key}" for key in keys]

    @contextlib.asynccontextmanager
    async def _command(self, what: str, timeout: float = TIMEOUT) -> AsyncIterator[None]:
        if not self._open:
            raise StoreUnavailable("the Redis session store is not open")
        async with translated(what, timeout):
            yield

    async def _changed(self, entry: Any) -> None:
        """A change is in Redis with its stream entry: return once this process (and, through the
        shared counter, this machine) sees it."""
        try:
            await self.stream.seen(entry)
        except ValueError as exc:
            raise StoreUnavailable(f"Redis answered a stream entry id that is not one: {exc}") from exc
        if self._counter is not None:
            await self._counter.publish()

    # --- lifecycle

    async def open(self) -> None:
        try:
            async with translated(f"{self._url.shown}: opening the session store"):
                if await self._redis.ping() is not True:
                    raise StoreUnavailable(f"{self._url.shown}: PING was not answered PONG")
            await self.feed.open()
        except BaseException:
            await self.close()
            raise
        self._open = True

    async def close(self) -> None:
        self._open = False
        await self.feed.close()
        await self._redis.aclose()

    async def ping(self) -> bool:
        try:
            async with self._command("ping"):
                return await self._redis.ping() is True
        except StoreError:
            return False

    # --- sessions

    async def create_session(
        self, id_hash: str, user_id: int, now: float, client: str, user_agent: str,
        *, persistent: bool = False, binding: str = "", mfa: str = "",
    ) -> None:
        if mfa not in SESSION_MFA:
            raise ValueError(f"unknown second factor kind {mfa!r}")
        async with self._command("creating a session"):
            entry = await self._create(
                keys=[self._session_key(id_hash), self._user_key(user_id), self._index, self._stream],
                args=[id_hash, user_id, _text(now), client, user_agent, int(persistent), binding, SESSION_TTL, MAXLEN,
                      mfa],
            )
        if entry is None:
            raise StoreError(f"session {id_hash[:12]} exists already")
        await self._changed(entry)

    async def get_session(self, id_hash: str) -> SessionRecord | None:
        async with self._command("reading a session"):
            reply = await self._redis.hgetall(self._session_key(id_hash))
        if reply == {}:
            return None
        return _session(id_hash, reply)

    async def list_sessions(self, user_id: int | None = None) -> list[SessionRecord]:
        if user_id is None:
            found = await self._listing(self._index, "zset")
        else:
            found = await self._listing(self._user_key(user_id), "set")
        return sorted(found, key=lambda r: (r.created_at, r.id_hash))

    async def find_sessions(self, id_prefix: str) -> list[SessionRecord]:
        if not id_prefix or not all(c in "0123456789abcdef" for c in id_prefix):
            return []  # (and so no glob character ever reaches MATCH)
        found = await self._listing(self._index, "zset", id_prefix)
        return sorted(found, key=lambda r: r.id_hash)

    async def _listing(self, key: str, kind: str, id_prefix: str = "") -> list[SessionRecord]:
        found: dict[str, SessionRecord] = {}
        cursor = "0"
        async with self._command("listing sessions", BULK_TIMEOUT):
            while True:
                reply = await self._list(keys=[key], args=[cursor, kind, self._prefix, id_prefix, LIST_PAGE])
                cursor, records = _page(reply)
                found.update((record.id_hash, record) for record in records)
                if cursor == "0":
                    return list(found.values())

    async def count_sessions(self, *, created_after: float, seen_after: float) -> dict[int, int]:
        async with self._command("counting sessions", BULK_TIMEOUT):
            reply = await self._count(keys=[self._index], args=[self._prefix, _text(created_after), _text(seen_after)])
        try:
            if not isinstance(reply, list) or len(reply) % 2:
                raise ValueError("not a list of pairs")
            return {_whole(reply[i]): _count(reply[i + 1]) for i in range(0, len(reply), 2)}
        except ValueError as exc:
            raise StoreError(f"damaged session records in Redis: {exc}") from exc

    async def touch_session(self, id_hash: str, now: float) -> None:
        await self.touch_sessions({id_hash: now})

    async def touch_sessions(self, seen: Mapping[str, float]) -> None:
        if not seen:
            return
        args: list[str | int] = [self._prefix, SESSION_TTL]
        for id_hash, now in seen.items():
            args += [id_hash, _text(now)]
        async with self._command("refreshing idle clocks"):
            await self._touch(keys=[self._index], args=args)

    async def delete_session(self, id_hash: str) -> bool:
        async with self._command("deleting a session"):
            entry = await self._delete(keys=[self._session_key(id_hash), self._index, self._stream],
                                       args=[id_hash, self._prefix, MAXLEN])
        if entry is None:
            return False
        await self._changed(entry)
        return True

    async def delete_user_sessions(self, user_id: int, *, keep: str | None = None) -> int:
        async with self._command("deleting a user's sessions", BULK_TIMEOUT):
            reply = await self._delete_user(keys=[self._user_key(user_id), self._index, self._stream],
                                            args=[keep or "", self._prefix, MAXLEN])
        return await self._deleted(reply)

    async def delete_all_sessions(self) -> int:
        async with self._command("deleting every session", BULK_TIMEOUT):
            reply = await self._delete_all(keys=[self._index, self._stream], args=[self._prefix, MAXLEN])
        return await self._deleted(reply)

    async def _deleted(self, reply: Any) -> int:
        """How many sessions a bulk delete ended ({count} or {count, stream entry}), once seen."""
        if not isinstance(reply, list) or not reply or not isinstance(reply[0], int):
            raise StoreUnavailable("Redis answered a delete with something else than a count")
        if len(reply) > 1:
            await self._changed(reply[1])
        return reply[0]

    # --- sign-in throttling

    def _throttle_ttl(self, window: float) -> int:
        return math.ceil((window + THROTTLE_MARGIN) * 1000)

    async def get_throttle(self, keys: list[str]) -> dict[str, ThrottleState]:
        if not keys:
            return {}
        async with self._command("reading throttle counters"):
            pipe = self._redis.pipeline(transaction=False)
            for key in self._throttle_keys(keys):
                pipe.hmget(key, ["failures", "last"])
            rows = await pipe.execute()
        found: dict[str, ThrottleState] = {}
        try:
            for key, row in zip(keys, rows, strict=True):
                if not isinstance(row, list) or len(row) != 2:
                    raise ValueError("not a counter")
                if row != [None, None]:
                    found[key] = ThrottleState(_whole(row[0]), _finite(row[1]))
        except ValueError as exc:
            raise StoreError(f"a damaged throttle counter in Redis: {exc}") from exc
        return found

    async def record_failure(self, keys: list[str], now: float, window: float) -> None:
        if not keys:
            return
        async with self._command("counting a sign-in failure"):
            await self._record_failure(keys=self._throttle_keys(keys),
                                       args=[_text(now), _text(window), self._throttle_ttl(window)])

    async def reserve_attempt(self, rules: Mapping[str, BackOff], now: float, window: float) -> float:
        if not rules:
            return 0.0
        args: list[str | int] = [_text(now), _text(window), self._throttle_ttl(window)]
        for rule in rules.values():
            args += [rule.free, _text(rule.base), _text(rule.cap)]
        async with self._command("reserving a sign-in attempt"):
            reply = await self._reserve(keys=self._throttle_keys(list(rules)), args=args)
        try:
            wait = _finite(reply)
        except ValueError:
            wait = -1.0
        if wait < 0:
            raise StoreUnavailable(f"Redis answered a wait that is not one: {reply!r:.40}")
        return wait

    async def release_attempt(self, keys: list[str]) -> None:
        if not keys:
            return
        async with self._command("releasing a sign-in attempt"):
            await self._release(keys=self._throttle_keys(keys))

    async def clear_throttle(self, keys: list[str]) -> None:
        if not keys:
            return
        async with self._command("clearing throttle counters"):
            await self._redis.delete(*self._throttle_keys(keys))
