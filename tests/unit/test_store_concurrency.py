"""Two processes' stores on one SQLite file, writing at once: nobody may see `database is locked`.

Two gateway workers (and the CLI) share the file. Issue 10 saw sign-ins answer 500 and issue 11
saw proxied requests answer 503 when the throttle's writes or the idle clock's refresh met the
other worker's lock. These run the same writes, many at a time, through two connections.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from gateway.auth.throttle import WINDOW
from gateway.config import StoreSettings
from gateway.store import AuditRecord, BackOff, Stores, open_stores
from gateway.store import sqlite as sqlite_store
from gateway.store.sqlite import SqliteStore
from gateway.store.stores import sqlite_url
from tests.unit.samples import version_1_store

TASKS = 16  # per store, all at once
ROUNDS = 25  # each task's writes, one after another


def Urls(path: Path) -> StoreSettings:
    return StoreSettings(path=path, users=sqlite_url(path), sessions=sqlite_url(path))


NEVER_WAIT = BackOff(free=1_000_000, base=1.0, cap=1.0)


@pytest.fixture
async def two_workers(tmp_path: Path) -> AsyncIterator[tuple[Stores, Stores]]:
    """Both as a serving worker opens it: with the session cache on."""
    path = tmp_path / "shared.db"
    first, second = open_stores(Urls(path), cache_ttl=0.75), open_stores(Urls(path), cache_ttl=0.75)
    await first.open()
    await second.open()
    yield first, second
    await first.close()
    await second.close()


async def _hammer(stores: Stores, worker: int, task: int, session: str, now: Callable[[], float]) -> None:
    """What one worker's requests do to the store: read the session, refresh its idle clock, reserve,
    give back and clear throttle counters, write audit rows."""
    keys = [f"account:user{task}", f"client:10.{worker}.0.{task}"]
    for _ in range(ROUNDS):
        assert await stores.cache.lookup(session) is not None
        await stores.sessions.touch_session(session, now())
        await stores.throttle.reserve_attempt(dict.fromkeys(keys, NEVER_WAIT), now(), WINDOW)
        await stores.throttle.release_attempt(keys[:1])
        await stores.throttle.record_failure(keys[1:], now(), WINDOW)
        await stores.throttle.clear_throttle(keys[1:])
        await stores.audit.add_audit([AuditRecord(now(), "test.event", f"user{task}", None, "{}")])


async def test_parallel_refreshes_and_throttle_writes_never_meet_a_lock(
    two_workers: tuple[Stores, Stores],
) -> None:
    first, second = two_workers
    user = await first.users.add_user("alice", "h", (), 0.0)
    await first.sessions.create_session("s1", user.id, 0.0, "", "")
    ticks = iter(range(1, 1_000_000))

    def now() -> float:
        return float(next(ticks))

    jobs: list[Awaitable[None]] = [
        _hammer(store, worker, task, "s1", now)
        for worker, store in enumerate((first, second)) for task in range(TASKS)
    ]
    results = await asyncio.gather(*jobs, return_exceptions=True)
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    record = await second.sessions.get_session("s1")
    assert record is not None and record.last_seen > 0.0


async def test_processes_opening_an_old_store_at_once_migrate_it_once(tmp_path: Path) -> None:
    """The version is read and the migration written in one IMMEDIATE transaction: a second process
    opening the file at the same moment waits and finds it migrated (it used to add the same
    columns again and fail to start)."""
    path = tmp_path / "old.db"
    version_1_store(path)
    stores = [SqliteStore(path) for _ in range(4)]
    try:
        results = await asyncio.gather(*(store.open() for store in stores), return_exceptions=True)
        assert [r for r in results if isinstance(r, BaseException)] == []
        user = await stores[0].add_user("alice", "h", (), 0.0)
        await stores[1].create_session("s1", user.id, 0.0, "", "", persistent=True)
        record = await stores[2].get_session("s1")
        assert record is not None and record.persistent
    finally:
        for store in stores:
            await store.close()


async def test_a_write_cancelled_while_waiting_for_the_lock_leaves_no_transaction_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A request cancelled (client gone, shutdown) while its write waits for another process's
    lock: SQLite still runs the queued BEGIN IMMEDIATE later. Left open, that transaction would hold
    the file's write lock for good, and every other process's writes would fail."""
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 2.0)
    path = tmp_path / "shared.db"
    store, other = SqliteStore(path), SqliteStore(path)
    await store.open()
    await other.open()
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        waiting = asyncio.ensure_future(store.record_failure(["k"], 1.0, WINDOW))
        while not store._write_lock.locked():  # its BEGIN IMMEDIATE is queued once it holds the lock
            await asyncio.sleep(0.001)
        waiting.cancel()
        holder.execute("COMMIT")  # the queued BEGIN now gets the lock on the store's connection
        with pytest.raises(asyncio.CancelledError):
            await waiting

        await other.record_failure(["k"], 2.0, WINDOW)  # the lock is free again
        await store.record_failure(["k"], 3.0, WINDOW)  # and the cancelled store writes normally
        assert (await other.get_throttle(["k"]))["k"].failures == 2
    finally:
        holder.close()
        await store.close()
        await other.close()
