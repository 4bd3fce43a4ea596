"""The session cache's rules (the pure RowCache), with the change feed's mark and the clock passed in."""

from __future__ import annotations

from gateway.store.base import SessionRecord
from gateway.store.cache import RowCache


def record(id_hash: str = "a", last_seen: float = 1.0) -> SessionRecord:
    return SessionRecord(id_hash, 1, 0.0, 0.0, last_seen, "", "")


def cache(ttl: float = 1.0, max_entries: int = 100, mark: int = 7) -> RowCache[str, SessionRecord]:
    rows: RowCache[str, SessionRecord] = RowCache(ttl, max_entries)
    rows.sync(mark)
    return rows


def test_a_row_is_served_until_its_ttl() -> None:
    rows = cache()
    assert rows.get("a", 0.0) == (False, None)
    rows.put("a", record(), 7, 10.0)
    assert rows.get("a", 10.5) == (True, record())
    assert rows.get("a", 11.0) == (False, None)  # exactly ttl old: asked again
    assert len(rows) == 0


def test_an_absent_session_is_remembered_as_absent() -> None:
    rows = cache()
    rows.put("gone", None, 7, 0.0)
    assert rows.get("gone", 0.1) == (True, None)


def test_a_moved_mark_drops_everything_and_refuses_rows_read_before_it() -> None:
    rows = cache()
    rows.put("a", record(), 7, 0.0)
    rows.sync(8)  # someone committed a change
    assert rows.get("a", 0.1) == (False, None)
    rows.put("a", record(), 7, 0.2)  # read before the change: stale, not kept
    assert rows.get("a", 0.3) == (False, None)
    rows.put("a", record(), 8, 0.4)
    assert rows.get("a", 0.5)[0]
    rows.sync(8)  # unchanged: kept
    assert rows.get("a", 0.5)[0]


def test_a_feed_that_cannot_vouch_caches_nothing() -> None:
    rows = cache()
    rows.put("a", record(), 7, 0.0)
    rows.sync(None)
    assert rows.get("a", 0.1) == (False, None)
    rows.put("a", record(), None, 0.1)
    assert rows.get("a", 0.2) == (False, None)


def test_touch_updates_the_cached_row() -> None:
    rows = cache()
    rows.put("a", record(last_seen=1.0), 7, 0.0)
    rows.update("a", lambda r: SessionRecord(r.id_hash, r.user_id, r.created_at, r.auth_time, 5.0, "", ""))
    hit, row = rows.get("a", 0.1)
    assert hit and row is not None and row.last_seen == 5.0
    rows.update("missing", lambda r: r)
    assert rows.get("missing", 0.1) == (False, None)


def test_size_is_bounded_oldest_first() -> None:
    rows = cache(ttl=10.0, max_entries=2)
    for name in "abc":
        rows.put(name, record(name), 7, 0.0)
    assert len(rows) == 2
    assert rows.get("a", 0.1) == (False, None)
    assert rows.get("c", 0.1)[0]
