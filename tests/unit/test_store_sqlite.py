"""What only the SQLite store does: its file, its migrations, its change counter beside the file,
and its exceptions translated at its edge. (The contract it shares with every store is
store_contract.py, run by test_store_contract.py.)"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.config import StoreSettings
from gateway.store import AuditRecord, StoreError, Stores, StoreUnavailable, open_session_store, open_stores, open_user_store
from gateway.store.feed import SharedCounter, counter_path
from gateway.store.sqlite import SqliteStore
from gateway.store.stores import sqlite_url
from tests.unit.samples import version_1_store
from tests.unit.store_contract import CHANGES, check_changed, make_change


def Urls(path: Path) -> StoreSettings:
    return StoreSettings(path=path, users=sqlite_url(path), sessions=sqlite_url(path))


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
        assert record is not None and record.user_id == 1 and not record.persistent
        user = await store.get_user_by_id(1)
        assert user is not None and user.name == "old" and user.password_changed_at == 0.0
        await store.add_audit([])
        assert await store.get_throttle(["x"]) == {}
        phone = await store.add_factor(1, "totp", "phone", "k", 2.0)  # schema 5's tables, added on open
        assert await store.use_totp_step(1, phone.id, 5, 3.0)
        await store.set_recovery_codes(1, ["d"], 3.0)
        assert await store.count_recovery_codes(1) == 1
    finally:
        await store.close()


async def test_a_damaged_second_factor_mark_is_an_error_never_a_passed_factor(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    try:
        await store.create_session("ab", 1, 1.0, "", "", mfa="totp")
        with sqlite3.connect(tmp_path / "s.db") as conn:
            conn.execute("UPDATE sessions SET mfa = 'TOTP' WHERE id_hash = 'ab'")
        with pytest.raises(StoreError):
            await store.get_session("ab")
    finally:
        await store.close()


async def test_a_new_store_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = SqliteStore(tmp_path / "var" / "new.db")
        await store.open()
        await store.add_user("alice", "hash", (), 1.0)
        await store.close()
    finally:
        os.umask(old)
    for name in ("new.db", "new.db-wal", "new.db-shm", "new.db-changes"):
        path = tmp_path / "var" / name
        if path.exists():
            assert path.stat().st_mode & 0o077 == 0, name
    assert (tmp_path / "var" / "new.db-changes").exists()


@pytest.fixture
async def gateway_and_cli(tmp_path: Path) -> AsyncIterator[tuple[Stores, Stores]]:
    """A gateway worker's stores (session cache on, a long TTL) and another process's (the CLI, another
    worker) on one file: separate connections and separate mappings of the change counter."""
    path = tmp_path / "shared.db"
    gateway, cli = open_stores(Urls(path), cache_ttl=60.0), open_stores(Urls(path))
    await gateway.open()
    await cli.open()
    yield gateway, cli
    await gateway.close()
    await cli.close()


@pytest.mark.parametrize("change", CHANGES)
async def test_another_process_change_is_in_force_at_the_next_lookup(
    gateway_and_cli: tuple[Stores, Stores], change: str
) -> None:
    """No poll and no wait: once the other process's write returned, the very next lookup sees it,
    though the cached row would otherwise be served for another minute."""
    gateway, cli = gateway_and_cli
    user = await cli.users.add_user("alice", "h", ("admin",), 1.0)
    await cli.sessions.create_session("s1", user.id, 10.0, "", "")
    first = await gateway.cache.lookup("s1")
    assert first is not None and first.user.roles == ("admin",)
    assert await gateway.cache.lookup("s1") == first and len(gateway.cache) == 2  # the session and its user
    await make_change(cli, change)
    check_changed(await gateway.cache.lookup("s1"), change)


async def test_only_user_and_session_changes_move_the_counter(gateway_and_cli: tuple[Stores, Stores]) -> None:
    """Other workers touch idle clocks, write audit rows and throttle counters all the time: none of
    that may empty the cache (every request would go to the store again); a revocation must."""
    gateway, other = gateway_and_cli
    user = await other.users.add_user("alice", "h", ("admin",), 1.0)
    await other.sessions.create_session("s1", user.id, 10.0, "", "")
    before = gateway.feed.mark()
    await other.sessions.touch_session("s1", 20.0)
    await other.audit.add_audit([AuditRecord(1.0, "x", None, None, "{}")])
    await other.throttle.record_failure(["k"], 1.0, 60.0)
    assert gateway.feed.mark() == before
    await other.sessions.delete_session("s1")
    assert gateway.feed.mark() != before


async def test_the_counter_never_goes_back(tmp_path: Path) -> None:
    path = tmp_path / "db-changes"
    first = SharedCounter(path)
    await first.open()
    start = first.mark()
    assert start is not None and start > 1_600_000_000 * 10**9  # a new counter starts from the clock
    second = SharedCounter(path)
    await second.open()
    await second.publish()
    assert first.mark() == second.mark() == start + 1  # one shared page, no system call to read it
    await first.close()
    await second.close()
    path.unlink()  # deleted and made again: still beyond every value seen before
    third = SharedCounter(path)
    await third.open()
    assert (third.mark() or 0) > start + 1
    await third.close()
    assert third.mark() is None  # closed: vouches for nothing
    assert counter_path(tmp_path / "gateway.db") == tmp_path / "gateway.db-changes"


async def test_sqlite_errors_never_leave_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    await store.open()
    await store.close()
    for call in (store.get_session("x"), store.delete_session("x"), store.list_users(),
                 store.add_user("a", "h", (), 1.0), store.record_failure(["k"], 1.0, 60.0)):
        with pytest.raises(StoreUnavailable):
            await call
    assert not await store.ping()
    await store.open()
    with sqlite3.connect(tmp_path / "s.db") as conn:  # a table gone from under a running store
        conn.execute("DROP TABLE throttle")
    try:
        with pytest.raises(StoreUnavailable):
            await store.get_throttle(["k"])
        with pytest.raises(StoreUnavailable):
            await store.record_failure(["k"], 1.0, 60.0)
    finally:
        await store.close()


@pytest.mark.parametrize(("opener", "url", "message"), [
    (open_user_store, "redis://127.0.0.1:6379/0", "redis:// cannot be opened here: expected sqlite:///PATH or postgresql://"),
    (open_session_store, "postgresql://db/gateway", "postgresql:// cannot be opened here: expected sqlite:///PATH or redis://"),
    (open_user_store, "mysql://u:secret@db", "mysql:// cannot be opened here"),
    (open_session_store, "sqlite:///", "sqlite:// cannot be opened here"),
])
def test_store_urls_each_side_cannot_open(opener: Callable[[str], object], url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        opener(url)
    assert "secret" not in str(caught.value)
