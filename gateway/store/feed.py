"""Change feeds: how every process on a machine learns at once that users or sessions changed.

``SharedCounter`` is a 64-bit counter in a small file beside the SQLite store, mapped into memory
by every process that opens the store (each worker, the CLI). A writer bumps it after each
committed change to users or sessions; each request reads it (one memory read, no system call).
A change is therefore in force on every worker of the machine before the write's caller (a
sign-out response, a `gateway users` command) returns: there is no polling window.

Bumps are serialised by an ``flock`` on the file (writes are rare); reads take no lock. A new file
starts from the clock in nanoseconds, so a counter file deleted and made again never goes back to
a value a running process has already seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import mmap
import os
import struct
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.store.base import ChangeFeed, StoreUnavailable

__all__ = ["CombinedFeed", "SharedCounter", "counter_path"]

_SIZE = 4096  # one page; the counter is its first 8 bytes
_COUNTER = struct.Struct("<Q")


def counter_path(database: Path) -> Path:
    """Where the change counter of the SQLite file ``database`` lives."""
    return database.with_name(database.name + "-changes")


class SharedCounter:
    """A ``ChangeFeed`` for every process on one machine, through a shared memory map."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1
        self._map: mmap.mmap | None = None

    async def open(self) -> None:
        try:
            self._map, self._fd = await asyncio.to_thread(self._open)
        except OSError as exc:
            raise StoreUnavailable(f"{self.path}: cannot open the change counter: {exc}") from exc

    def _open(self) -> tuple[mmap.mmap, int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < _SIZE:  # new (or cut short): start from the clock
                    os.ftruncate(fd, _SIZE)
                    os.pwrite(fd, _COUNTER.pack(time.time_ns()), 0)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
            return mmap.mmap(fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE), fd
        except BaseException:
            os.close(fd)
            raise

    def mark(self) -> int | None:
        if self._map is None:
            return None
        value: int = _COUNTER.unpack_from(self._map, 0)[0]
        return value

    async def publish(self) -> None:
        # A few microseconds under a lock nobody holds for longer: not worth a thread.
        if self._map is None:
            raise StoreUnavailable(f"{self.path}: the change counter is not open")
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            _COUNTER.pack_into(self._map, 0, (_COUNTER.unpack_from(self._map, 0)[0] + 1) % 2**64)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    async def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1


class CombinedFeed:
    """Several feeds as one (users and sessions in different stores): the mark moves when any of
    theirs does, and nothing is vouched for while any of them cannot vouch."""

    def __init__(self, feeds: Sequence[ChangeFeed]) -> None:
        self.feeds = tuple(feeds)

    def mark(self) -> int | None:
        total = 0
        for feed in self.feeds:
            mark = feed.mark()
            if mark is None:
                return None
            total += mark
        return total

    async def publish(self) -> None:
        for feed in self.feeds:
            await feed.publish()

    async def open(self) -> None:
        for feed in self.feeds:
            await feed.open()

    async def close(self) -> None:
        for feed in self.feeds:
            await feed.close()
