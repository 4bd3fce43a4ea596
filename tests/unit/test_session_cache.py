"""The session cache's rules, with the clock passed in."""

from __future__ import annotations

from gateway.store.base import SessionRecord
from gateway.store.cache import SessionCache


def record(id_hash: str = "a", last_seen: float = 1.0) -> SessionRecord:
    return SessionRecord(id_hash, 1, "alice", ("admin",), False, 0.0, 0.0, last_seen, "", "")


def test_a_row_is_served_until_its_ttl() -> None:
    cache = SessionCache(ttl=1.0)
    assert cache.get("a", 0.0) == (False, None)
    cache.put("a", record(), cache.generation, 10.0)
    assert cache.get("a", 10.5) == (True, record())
    assert cache.get("a", 11.0) == (False, None)  # exactly ttl old: asked again
    assert len(cache) == 0


def test_an_absent_session_is_remembered_as_absent() -> None:
    cache = SessionCache(ttl=1.0)
    cache.put("gone", None, cache.generation, 0.0)
    assert cache.get("gone", 0.1) == (True, None)


def test_invalidate_drops_everything_and_refuses_rows_read_before_it() -> None:
    cache = SessionCache(ttl=1.0)
    cache.put("a", record(), cache.generation, 0.0)
    before = cache.generation
    cache.invalidate()
    assert cache.get("a", 0.1) == (False, None)
    cache.put("a", record(), before, 0.2)  # read before the write: stale, not kept
    assert cache.get("a", 0.3) == (False, None)
    cache.put("a", record(), cache.generation, 0.4)
    assert cache.get("a", 0.5)[0]


def test_touch_updates_the_cached_row() -> None:
    cache = SessionCache(ttl=1.0)
    cache.put("a", record(last_seen=1.0), cache.generation, 0.0)
    cache.touched("a", 5.0)
    hit, row = cache.get("a", 0.1)
    assert hit and row is not None and row.last_seen == 5.0
    cache.touched("missing", 5.0)
    assert cache.get("missing", 0.1) == (False, None)


def test_size_is_bounded_oldest_first() -> None:
    cache = SessionCache(ttl=10.0, max_entries=2)
    for name in "abc":
        cache.put(name, record(name), cache.generation, 0.0)
    assert len(cache) == 2
    assert cache.get("a", 0.1) == (False, None)
    assert cache.get("c", 0.1)[0]
