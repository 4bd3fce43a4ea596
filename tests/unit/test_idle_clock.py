"""The idle clock's refresh, written behind the request path: coalesced, retried, never lost."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping

import pytest

from gateway.auth.idle_clock import BATCH, IdleClock


class FakeStore:
    """Records each write; the first ``failures`` writes fail as a locked database does."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.writes: list[dict[str, float]] = []
        self.stored: dict[str, float] = {}

    async def touch_sessions(self, seen: Mapping[str, float]) -> None:
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        self.writes.append(dict(seen))
        for id_hash, now in seen.items():
            self.stored[id_hash] = max(now, self.stored.get(id_hash, now))


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll for a condition (readiness, not synchronisation: the check decides)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.005)


async def test_notes_are_coalesced_into_one_write() -> None:
    store = FakeStore()
    clock = IdleClock(store, remember_for=1800)  # type: ignore[arg-type]
    for now in range(100):
        clock.note("a", float(now))
        clock.note("b", float(now))
    assert store.writes == []  # nothing on the caller's path
    await clock.flush()
    assert store.writes == [{"a": 99.0, "b": 99.0}]
    assert clock.pending == 0 and clock.seen("a") == 99.0


async def test_a_large_backlog_is_written_in_short_transactions() -> None:
    store = FakeStore()
    clock = IdleClock(store, remember_for=1800)  # type: ignore[arg-type]
    for n in range(BATCH * 2 + 1):
        clock.note(f"s{n}", 10.0)
    await clock.flush()
    assert [len(write) for write in store.writes] == [BATCH, BATCH, 1]


async def test_a_failed_write_is_logged_kept_and_retried(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeStore(failures=2)
    clock = IdleClock(store, remember_for=1800, retry_delay=0.01)  # type: ignore[arg-type]
    clock.start()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.sessions"):
            clock.note("a", 5.0)
            assert clock.seen("a") == 5.0  # counts at once, stored or not
            await _until(lambda: store.stored.get("a") == 5.0)
    finally:
        await clock.stop()
    assert [r.getMessage() for r in caplog.records].count(
        "idle-clock refreshes of 1 session(s) not stored yet, retrying in 0.01 s: OperationalError") == 2


async def test_a_note_made_during_a_write_is_not_lost() -> None:
    gate = asyncio.Event()

    class SlowStore(FakeStore):
        async def touch_sessions(self, seen: Mapping[str, float]) -> None:
            await gate.wait()
            await super().touch_sessions(seen)

    store = SlowStore()
    clock = IdleClock(store, remember_for=1800)  # type: ignore[arg-type]
    clock.note("a", 1.0)
    writing = asyncio.ensure_future(clock.flush())
    await asyncio.sleep(0)  # the write has started with 1.0
    clock.note("a", 2.0)
    gate.set()
    await writing
    assert store.stored["a"] == 2.0 and clock.pending == 0


async def test_stop_stores_what_is_noted() -> None:
    store = FakeStore()
    clock = IdleClock(store, remember_for=1800)  # type: ignore[arg-type]
    clock.note("a", 1.0)
    await clock.stop()
    assert store.stored == {"a": 1.0}


def test_refreshes_too_old_to_matter_are_forgotten() -> None:
    clock = IdleClock(FakeStore(), remember_for=100)  # type: ignore[arg-type]
    clock.note("old", 0.0)
    clock.note("new", 50.0)
    clock.note("newer", 150.0)  # "old" can no longer keep a session alive
    assert clock.seen("old") is None and clock.seen("new") == 50.0 and clock.seen("newer") == 150.0
    assert clock.pending == 3  # forgetting is for seen(): every noted refresh is still written
