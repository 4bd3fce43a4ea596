"""A small in-process cache of session rows, so the proxied hot path needs no database round trip.

Correctness comes first: a cached row may be served only while nothing could have changed it.
- Every local write to users or sessions calls ``invalidate()``, which empties the cache and bumps
  a generation number; a lookup that started before the write cannot put its (older) row back.
- Writes by other processes (the ``gateway users``/``sessions`` commands, other workers) are noticed
  by the store polling SQLite's ``PRAGMA data_version``, which also calls ``invalidate()``.
- Whatever happens to that poll, no entry is served once it is ``ttl`` seconds old, so a change
  reaches every process within ``ttl`` (the contract's bound is one second).

Pure data structure: the caller passes the (monotonic) time in; no I/O, no asyncio.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.store.base import SessionRecord

DEFAULT_TTL = 0.75  # seconds; the contract requires changes to reach a running gateway within 1 s
DEFAULT_MAX_ENTRIES = 50_000  # ~ a few hundred bytes each; evicted oldest first


class SessionCache:
    def __init__(self, ttl: float = DEFAULT_TTL, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.ttl = ttl
        self._max = max_entries
        # id_hash -> (row or None for "no such session", monotonic time it was read)
        self._entries: dict[str, tuple[SessionRecord | None, float]] = {}
        self.generation = 0

    def get(self, id_hash: str, now: float) -> tuple[bool, SessionRecord | None]:
        """(hit, row). A hit with None means the store said "no such session" moments ago."""
        entry = self._entries.get(id_hash)
        if entry is None:
            return False, None
        if now - entry[1] >= self.ttl:
            del self._entries[id_hash]
            return False, None
        return True, entry[0]

    def put(self, id_hash: str, record: SessionRecord | None, generation: int, read_at: float) -> None:
        """Remember a row read at ``read_at`` when no invalidation happened since ``generation``."""
        if generation != self.generation:
            return  # a write raced the read: the row may already be stale
        if len(self._entries) >= self._max:
            self._entries.pop(next(iter(self._entries)))
        self._entries[id_hash] = (record, read_at)

    def touched(self, id_hash: str, last_seen: float) -> None:
        """Our own last_seen write: keep the cached row in step without dropping it (the store
        keeps the newer time, and so does the cache)."""
        entry = self._entries.get(id_hash)
        if entry is not None and entry[0] is not None and last_seen > entry[0].last_seen:
            self._entries[id_hash] = (replace(entry[0], last_seen=last_seen), entry[1])

    def invalidate(self) -> None:
        self._entries.clear()
        self.generation += 1

    def __len__(self) -> int:
        return len(self._entries)
