"""The idle clock's refresh (``last_seen``), written behind the request path.

A request whose session was last refreshed a while ago only *notes* the time (a dict assignment);
one background task writes every noted refresh, many sessions in one transaction, soon after. So a
request never waits for that write, never fails because it met another worker's lock (issue 11:
503s exactly a minute after sign-in), and a burst of requests for one session makes one write.

Until a refresh is stored, and for as long as its write keeps failing, ``seen()`` remembers it: the
session manager judges idleness by the newer of the stored time and the noted one, so a session's
validity never depends on whether, or when, the write happens. A failed write is logged and retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from gateway.background import BackgroundTask
from gateway.store.base import SessionStore

log = logging.getLogger("gateway.sessions")

BATCH = 500  # refreshes per write transaction: keeps each hold of the store's write lock short
RETRY_DELAY = 1.0  # seconds before a failed write is tried again
MAX_REMEMBERED = 100_000  # sessions remembered for seen(); the oldest are forgotten first


class IdleClock:
    def __init__(self, store: SessionStore, *, remember_for: float, retry_delay: float = RETRY_DELAY,
                 on_stored: Callable[[Mapping[str, float]], None] | None = None) -> None:
        """``remember_for``: the idle timeout. A refresh older than that cannot keep a session alive,
        so it need not be remembered once stored. ``on_stored``: told of each batch written (the
        session cache keeps its rows in step)."""
        self._store = store
        self._on_stored = on_stored
        self._remember_for = remember_for
        self._retry_delay = retry_delay
        self._pending: dict[str, float] = {}  # noted, not stored yet
        # The newest refresh this process noted per session, stored or not, oldest first: a lookup
        # that read the row just before the write committed must still see the refresh.
        self._noted: dict[str, float] = {}
        self._wake = asyncio.Event()
        self._task = BackgroundTask("idle-clock-writer", self._run)

    def note(self, id_hash: str, now: float) -> None:
        """The session was used at ``now``: store it soon (no I/O here)."""
        if now > self._pending.get(id_hash, float("-inf")):
            self._pending[id_hash] = now
        newest = max(now, self._noted.pop(id_hash, now))
        self._noted[id_hash] = newest  # re-inserted: the dict stays ordered oldest first
        self._forget_older_than(now - self._remember_for)
        self._wake.set()

    def seen(self, id_hash: str) -> float | None:
        """The newest refresh noted for the session in this process, or None."""
        return self._noted.get(id_hash)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _forget_older_than(self, horizon: float) -> None:
        # A refresh older than the idle timeout cannot keep a session alive: seen() may forget it
        # (a pending write still stores it).
        noted = self._noted
        while noted:
            oldest, when = next(iter(noted.items()))
            if when >= horizon and len(noted) <= MAX_REMEMBERED:
                return
            del noted[oldest]

    async def flush(self) -> None:
        """Store every noted refresh; on failure the unwritten ones stay noted and the error is raised."""
        while self._pending:
            batch = dict(list(self._pending.items())[:BATCH])
            await self._store.touch_sessions(batch)
            if self._on_stored is not None:
                self._on_stored(batch)
            for id_hash, when in batch.items():
                if self._pending.get(id_hash) == when:  # not noted again while the write ran
                    del self._pending[id_hash]

    def start(self) -> None:
        self._task.start()

    async def stop(self) -> None:
        """At shutdown: one last attempt to store what is noted; a failure is only logged."""
        await self._task.stop()
        try:
            await self.flush()
        except Exception as exc:
            log.warning("idle-clock refreshes of %d session(s) not stored at shutdown: %s",
                        len(self._pending), type(exc).__name__)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:  # busy or unreachable store: the refreshes stay noted
                log.warning("idle-clock refreshes of %d session(s) not stored yet, retrying in %g s: %s",
                            len(self._pending), self._retry_delay, type(exc).__name__)
                # A back-off between attempts, not synchronisation: new notes wait with the rest.
                await asyncio.sleep(self._retry_delay)
                self._wake.set()
