"""One contract suite for every Store implementation (only SQLite today), with an injected clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.auth.sessions import SessionManager, hash_session_id
from gateway.config import SessionSettings
from gateway.store.base import DuplicateUser, Store, UnknownUser
from gateway.store.sqlite import SqliteStore

FACTORIES: dict[str, Callable[[Path], Store]] = {"sqlite": lambda tmp: SqliteStore(tmp / "var" / "test.db")}


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
    sessions = SessionManager(store, settings, clock)
    user = await store.add_user("alice", "h", ("admin",), clock.now)

    sid = await sessions.start(user, "127.0.0.1", "agent")
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


async def test_end_session(store: Store) -> None:
    sessions = SessionManager(store, SessionSettings(True, 1800, 3600), Clock())
    user = await store.add_user("bob", "h", (), 0.0)
    sid = await sessions.start(user, "", "")
    await sessions.end(sid)
    assert await sessions.resolve(sid) is None
