"""One contract suite for every Store implementation (only SQLite today), with an injected clock."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import pytest

from gateway.auth.sessions import SessionManager, hash_session_id
from gateway.config import SessionSettings
from gateway.store.base import AuditRecord, DuplicateUser, Store, UnknownUser
from gateway.store.sqlite import SqliteStore
from tests.unit.samples import version_1_store

FACTORIES: dict[str, Callable[[Path], Store]] = {
    "sqlite": lambda tmp: SqliteStore(tmp / "var" / "test.db"),
    # The serving gateway's configuration: the whole contract must hold with the session cache on.
    "sqlite+cache": lambda tmp: SqliteStore(tmp / "var" / "test.db", session_cache_ttl=1.0),
}


@pytest.fixture(params=sorted(FACTORIES))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    instance = FACTORIES[request.param](tmp_path)
    await instance.open()
    yield instance
    await instance.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_users(store: Store) -> None:
    alice = await store.add_user("alice", "hash1", ("staff", "admin"), 1.0)
    assert alice.roles == ("admin", "staff")
    with pytest.raises(DuplicateUser):
        await store.add_user("ALICE", "hash2", (), 2.0)  # names are unique regardless of case
    found = await store.get_user("Alice")
    assert found is not None and found.name == "alice" and found.password_hash == "hash1"
    await store.set_roles("alice", ("ops",))
    await store.set_password_hash("alice", "hash3")
    await store.set_disabled("alice", True)
    found = await store.get_user("alice")
    assert found is not None and found.roles == ("ops",) and found.password_hash == "hash3" and found.disabled
    for change in (store.set_roles("ghost", ()), store.set_disabled("ghost", True), store.delete_user("ghost"),
                   store.set_password_hash("ghost", "x")):
        with pytest.raises(UnknownUser):
            await change
    await store.add_user("bob", "h", (), 3.0)
    assert [u.name for u in await store.list_users()] == ["alice", "bob"]
    await store.delete_user("alice")
    assert await store.get_user("alice") is None
    assert await store.ping()


async def test_sessions_follow_their_user(store: Store) -> None:
    user = await store.add_user("alice", "h", ("admin",), 1.0)
    await store.create_session("h1", user.id, 10.0, "127.0.0.1", "agent")
    record = await store.get_session("h1")
    assert record is not None and record.user_name == "alice" and record.roles == ("admin",)
    await store.set_roles("alice", ("staff",))
    record = await store.get_session("h1")
    assert record is not None and record.roles == ("staff",)  # roles are read live, not copied
    await store.touch_session("h1", 20.0)
    record = await store.get_session("h1")
    assert record is not None and record.last_seen == 20.0
    await store.create_session("h2", user.id, 10.0, "", "")
    assert await store.delete_user_sessions(user.id) == 2
    assert await store.get_session("h1") is None
    await store.create_session("h3", user.id, 10.0, "", "")
    await store.delete_user("alice")
    assert await store.get_session("h3") is None  # deleting the user ends its sessions


async def test_session_manager_timeouts(store: Store) -> None:
    clock = Clock()
    settings = SessionSettings(secure_cookie=True, idle_timeout=1800, absolute_timeout=3 * 3600)
    sessions = SessionManager(store, settings, clock=clock)
    user = await store.add_user("alice", "h", ("admin",), clock.now)

    sid = await sessions.start(user, "127.0.0.1", "")
    assert len(sid) >= 43  # 256 bits, url-safe
    assert await store.get_session(sid) is None  # only the hash is stored
    active = await sessions.resolve(sid)
    assert active is not None and active.principal.user == "alice"

    clock.now += 1700  # within idle timeout; resolve refreshes last_seen
    assert await sessions.resolve(sid) is not None
    clock.now += 1700
    assert await sessions.resolve(sid) is not None
    clock.now += 1801  # idle too long
    assert await sessions.resolve(sid) is None
    assert await store.get_session(hash_session_id(sid)) is None

    sid = await sessions.start(user, "", "")
    for _ in range(12):  # active all along, but the absolute lifetime still ends it
        clock.now += 1000
        result = await sessions.resolve(sid)
    assert result is None

    sid = await sessions.start(user, "", "")
    await store.set_disabled("alice", True)
    assert await sessions.resolve(sid) is None

    for bad in (None, "", "x" * 65, "bad chars!", sid + "x"):
        assert await sessions.resolve(bad) is None


@pytest.mark.parametrize(("bind", "same", "other"), [
    ("user_agent", {"client": "10.0.0.9", "user_agent": "Firefox"}, {"client": "10.0.0.1", "user_agent": "curl"}),
    ("client", {"client": "10.0.0.1", "user_agent": "curl"}, {"client": "10.0.0.9", "user_agent": "Firefox"}),
])
async def test_session_binding(store: Store, bind: str, same: dict[str, str], other: dict[str, str]) -> None:
    clock = Clock()
    settings = SessionSettings(secure_cookie=True, idle_timeout=1800, absolute_timeout=3600, bind=bind)
    sessions = SessionManager(store, settings, clock=clock)
    user = await store.add_user("carol", "h", (), 0.0)
    sid = await sessions.start(user, "10.0.0.1", "Firefox")
    assert await sessions.resolve(sid, **same) is not None  # what is not bound may change
    assert await sessions.resolve(sid, **other) is None  # a copied cookie used elsewhere: signed out
    assert await sessions.resolve(sid, client="10.0.0.1", user_agent="Firefox") is None  # and the session is gone


async def test_unbound_sessions_follow_the_cookie(store: Store) -> None:
    sessions = SessionManager(store, SessionSettings(True, 1800, 3600, bind="none"), clock=Clock())
    user = await store.add_user("dan", "h", (), 0.0)
    sid = await sessions.start(user, "10.0.0.1", "Firefox")
    assert await sessions.resolve(sid, client="10.9.9.9", user_agent="other") is not None


async def test_end_session(store: Store) -> None:
    sessions = SessionManager(store, SessionSettings(True, 1800, 3600), clock=Clock())
    user = await store.add_user("bob", "h", (), 0.0)
    sid = await sessions.start(user, "", "")
    await sessions.end(sid)
    assert await sessions.resolve(sid) is None


async def test_listing_finding_and_bulk_revocation(store: Store) -> None:
    alice = await store.add_user("alice", "h", (), 0.0)
    bob = await store.add_user("bob", "h", (), 0.0)
    await store.create_session("aa11", alice.id, 1.0, "10.0.0.1", "ua-1", persistent=True, binding="b1")
    await store.create_session("aa22", alice.id, 2.0, "10.0.0.2", "ua-2")
    await store.create_session("bb33", bob.id, 3.0, "10.0.0.3", "ua-3")
    assert [s.id_hash for s in await store.list_sessions(alice.id)] == ["aa11", "aa22"]
    assert len(await store.list_sessions()) == 3
    first = await store.get_session("aa11")
    assert first is not None and first.persistent and first.binding == "b1"
    assert [s.id_hash for s in await store.find_sessions("aa")] == ["aa11", "aa22"]
    assert [s.id_hash for s in await store.find_sessions("bb3")] == ["bb33"]
    assert await store.find_sessions("") == [] and await store.find_sessions("a%") == []
    assert await store.delete_user_sessions(alice.id, keep="aa22") == 1
    assert [s.id_hash for s in await store.list_sessions(alice.id)] == ["aa22"]
    assert await store.delete_session("aa22") and not await store.delete_session("aa22")
    assert await store.delete_all_sessions() == 1


async def test_audit_records(store: Store) -> None:
    from gateway.store.base import AuditRecord

    await store.add_audit([AuditRecord(float(t), f"event{t}", "alice" if t % 2 else "bob", "1.2.3.4", "{}")
                           for t in range(10)])
    assert [r.event for r in await store.list_audit(user="ALICE")] == ["event1", "event3", "event5", "event7", "event9"]
    assert [r.event for r in await store.list_audit(since=8.0)] == ["event8", "event9"]
    assert [r.event for r in await store.list_audit(limit=3)] == ["event7", "event8", "event9"]


async def test_throttle_counters_decay_after_the_window(store: Store) -> None:
    await store.record_failure(["acct:a", "ip:x"], 100.0, 3600.0)
    await store.record_failure(["acct:a"], 101.0, 3600.0)
    state = await store.get_throttle(["acct:a", "ip:x", "ip:none"])
    assert state["acct:a"].failures == 2 and state["acct:a"].last_failure == 101.0
    assert state["ip:x"].failures == 1 and "ip:none" not in state
    await store.record_failure(["acct:a"], 101.0 + 3601.0, 3600.0)
    assert (await store.get_throttle(["acct:a"]))["acct:a"].failures == 1  # a quiet hour forgets
    await store.clear_throttle(["acct:a"])
    assert await store.get_throttle(["acct:a"]) == {}


async def test_sqlite_migrates_a_version_1_database(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    version_1_store(path)
    with sqlite3.connect(path) as conn:
        conn.executescript("INSERT INTO users VALUES (1, 'old', 'h', 'admin', 0, 0);"
                           "INSERT INTO sessions VALUES ('ab', 1, 1, 1, 1, '', '');")
    store = SqliteStore(path)
    await store.open()
    try:
        record = await store.get_session("ab")
        assert record is not None and record.user_name == "old" and not record.persistent
        await store.add_audit([])
        assert await store.get_throttle(["x"]) == {}
    finally:
        await store.close()


async def test_idle_clock_is_written_at_most_once_a_minute(store: Store) -> None:
    clock = Clock()
    sessions = SessionManager(store, SessionSettings(True, 1800, 3600), clock=clock)
    user = await store.add_user("eve", "h", (), 0.0)
    sid = await sessions.start(user, "", "")
    started = clock.now
    for _ in range(59):  # a request a second for 59 seconds: no write
        clock.now += 1
        assert await sessions.resolve(sid) is not None
    await sessions.idle_clock.flush()
    record = await store.get_session(hash_session_id(sid))
    assert record is not None and record.last_seen == started
    clock.now += 1
    await sessions.resolve(sid)
    assert sessions.idle_clock.pending == 1  # noted by the request, written behind it
    for _ in range(30):  # many requests, one refresh
        await sessions.resolve(sid)
    await sessions.idle_clock.flush()
    record = await store.get_session(hash_session_id(sid))
    assert record is not None and record.last_seen == clock.now


class BusyTouches:
    """The store as another worker holding its write lock makes it look to idle-clock refreshes:
    they fail (``busy``) or hang until let through (``gate``). Everything else passes through."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.busy = False
        self.gate: asyncio.Event | None = None
        self.writes = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def _wait_or_fail(self) -> None:
        if self.busy:
            raise sqlite3.OperationalError("database is locked")
        if self.gate is not None:
            await self.gate.wait()

    async def touch_session(self, id_hash: str, now: float) -> None:
        await self._wait_or_fail()
        self.writes += 1
        await self.store.touch_session(id_hash, now)

    async def touch_sessions(self, seen: Mapping[str, float]) -> None:
        await self._wait_or_fail()
        self.writes += 1
        await self.store.touch_sessions(seen)


async def test_the_idle_clock_refresh_never_changes_validity(store: Store) -> None:
    """Issue 11: requests failed (503, or 401 for a valid session) when the refresh due a minute
    after sign-in met another worker's lock. The refresh may be late or fail; the request and the
    session's validity may not notice."""
    clock = Clock()
    busy = BusyTouches(store)
    # A 240 s idle timeout: the idle clock is refreshed every 60 s.
    sessions = SessionManager(busy, SessionSettings(True, idle_timeout=240, absolute_timeout=3600),  # type: ignore[arg-type]
                              clock=clock)
    user = await store.add_user("ida", "h", (), 0.0)
    sid = await sessions.start(user, "", "")
    signed_in = clock.now

    busy.busy = True
    clock.now += 60  # the refresh is due, and the store refuses it
    assert await sessions.resolve(sid) is not None
    with pytest.raises(sqlite3.OperationalError):
        await sessions.idle_clock.flush()  # the write failed: kept for the next attempt
    refreshed = clock.now
    clock.now = signed_in + 239 + 60  # idle by the stored row, alive by the refresh that was made
    assert await sessions.resolve(sid) is not None

    busy.busy, busy.gate = False, asyncio.Event()
    writing = asyncio.ensure_future(sessions.idle_clock.flush())  # the write is under way, not done
    await asyncio.sleep(0)
    for _ in range(5):
        assert await sessions.resolve(sid) is not None
    busy.gate.set()
    await writing
    assert busy.writes == 1
    record = await store.get_session(hash_session_id(sid))
    assert record is not None and record.last_seen == clock.now > refreshed  # the newest refresh, once
    clock.now += 239
    assert await sessions.resolve(sid) is not None
    clock.now += 241  # and idleness still ends it
    assert await sessions.resolve(sid) is None


async def test_a_busy_store_never_ends_a_live_session_early(store: Store) -> None:
    """Deleting a dead session is best effort; a live one is never deleted because a write failed."""
    clock = Clock()
    busy = BusyTouches(store)
    sessions = SessionManager(busy, SessionSettings(True, idle_timeout=240, absolute_timeout=3600),  # type: ignore[arg-type]
                              clock=clock)
    user = await store.add_user("ivo", "h", (), 0.0)
    sid = await sessions.start(user, "", "")
    busy.busy = True
    for _ in range(20):  # refreshes due all along, none stored
        clock.now += 100
        assert await sessions.resolve(sid) is not None
    assert await store.get_session(hash_session_id(sid)) is not None


async def test_listings_show_only_live_sessions_and_purge_removes_dead_ones(store: Store) -> None:
    clock = Clock()
    sessions = SessionManager(store, SessionSettings(True, idle_timeout=600, absolute_timeout=3600), clock=clock)
    user = await store.add_user("flo", "h", (), 0.0)
    old = await sessions.start(user, "", "")
    clock.now += 700  # past the idle limit, never used again
    fresh = await sessions.start(user, "", "")
    assert [r.id_hash for r in await sessions.live_sessions(user.id)] == [hash_session_id(fresh)]
    assert len(await store.list_sessions(user.id)) == 2
    assert await sessions.purge_expired() == 1
    assert [r.id_hash for r in await store.list_sessions(user.id)] == [hash_session_id(fresh)]
    assert old != fresh


async def test_the_live_count_matches_the_listing(store: Store) -> None:
    clock = Clock()
    sessions = SessionManager(store, SessionSettings(True, idle_timeout=600, absolute_timeout=3600), clock=clock)
    assert await sessions.count_live() == 0
    flo = await store.add_user("flo", "h", (), 0.0)
    ivo = await store.add_user("ivo", "h", (), 0.0)
    await sessions.start(flo, "", "")  # idle too long below
    clock.now += 700
    await sessions.start(flo, "", "")
    await sessions.start(ivo, "", "")
    assert await sessions.count_live() == 2 == len(await sessions.live_sessions())
    await store.set_disabled("ivo", True)
    assert await sessions.count_live() == 1 == len(await sessions.live_sessions())
    clock.now += 3000  # idle too long, all of them
    assert await sessions.count_live() == 0


async def test_user_agents_are_stored_without_control_characters(store: Store) -> None:
    sessions = SessionManager(store, SessionSettings(True, 1800, 3600, bind="none"), clock=Clock())
    user = await store.add_user("gus", "h", (), 0.0)
    await sessions.start(user, "", "Moz\x1b]0;PWNED\x07\u202e<b>")
    (record,) = await store.list_sessions(user.id)
    assert record.user_agent.isprintable() and "PWNED" in record.user_agent and "\x1b" not in record.user_agent


async def _poll(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Seconds until ``check`` holds (a readiness poll; the test asserts on the bound)."""
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not seen within {timeout} s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


@pytest.fixture
async def cached_and_other(tmp_path: Path) -> AsyncIterator[tuple[SqliteStore, SqliteStore]]:
    """A gateway's store (session cache on) and another process's (the CLI, a worker) on one file."""
    path = tmp_path / "shared.db"
    gateway, other = SqliteStore(path, session_cache_ttl=1.0), SqliteStore(path)
    await gateway.open()
    await other.open()
    yield gateway, other
    await gateway.close()
    await other.close()


@pytest.mark.parametrize("change", ["revoke", "disable", "roles", "delete"])
async def test_cached_rows_see_other_processes_writes_within_a_second(
    cached_and_other: tuple[SqliteStore, SqliteStore], change: str
) -> None:
    """The gateway caches session rows; the CLI (another connection) must still reach it within 1 s."""
    gateway, cli = cached_and_other
    user = await cli.add_user("alice", "h", ("admin",), 1.0)
    await cli.create_session("s1", user.id, 10.0, "", "")
    first = await gateway.get_session("s1")
    assert first is not None and first.roles == ("admin",)
    assert await gateway.get_session("s1") == first  # served again (from memory)
    if change == "revoke":
        await cli.delete_session("s1")
    elif change == "disable":
        await cli.set_disabled("alice", True)
    elif change == "roles":
        await cli.set_roles("alice", ("staff",))
    else:
        await cli.delete_user("alice")

    async def seen() -> bool:
        record = await gateway.get_session("s1")
        if change == "disable":
            return record is not None and record.user_disabled
        if change == "roles":
            return record is not None and record.roles == ("staff",)
        return record is None

    assert await _poll(seen, timeout=1.0) < 1.0


async def test_a_lookup_racing_a_local_write_cannot_cache_the_old_row(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "race.db", session_cache_ttl=1.0)
    await store.open()
    try:
        user = await store.add_user("alice", "h", (), 1.0)
        await store.create_session("s1", user.id, 10.0, "", "")
        # Start many lookups and a revocation at once; once the revocation returned, none may see the row.
        lookups = [asyncio.ensure_future(store.get_session("s1")) for _ in range(20)]
        await asyncio.sleep(0)  # let the lookups send their queries first: they read the old row
        await store.delete_session("s1")
        await asyncio.gather(*lookups)
        assert await store.get_session("s1") is None
    finally:
        await store.close()


async def test_only_user_and_session_changes_empty_the_cache(cached_and_other: tuple[SqliteStore, SqliteStore]) -> None:
    """Other workers touch idle clocks, write audit rows and throttle counters all the time: none of
    that may empty the cache (every request would go to the store again); a revocation must."""
    gateway, other = cached_and_other
    user = await other.add_user("alice", "h", ("admin",), 1.0)
    await other.create_session("s1", user.id, 10.0, "", "")
    await gateway.check_other_writers()
    assert await gateway.get_session("s1") is not None
    await other.touch_session("s1", 20.0)
    await other.add_audit([AuditRecord(1.0, "x", None, None, "{}")])
    await other.record_failure(["k"], 1.0, 60.0)
    assert not await gateway.check_other_writers()
    await other.delete_session("s1")
    assert await gateway.check_other_writers()
    assert await gateway.get_session("s1") is None
    await other.set_roles("alice", ("staff",))
    assert await gateway.check_other_writers()


async def test_a_new_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    import os

    old = os.umask(0o022)
    try:
        store = SqliteStore(tmp_path / "var" / "new.db")
        await store.open()
        await store.add_user("alice", "hash", (), 1.0)
        await store.close()
    finally:
        os.umask(old)
    for name in ("new.db", "new.db-wal", "new.db-shm"):
        path = tmp_path / "var" / name
        if path.exists():
            assert path.stat().st_mode & 0o077 == 0, name
