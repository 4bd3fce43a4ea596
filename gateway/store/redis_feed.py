"""The Redis change feed: every replica learns of each change to sessions through a Redis Stream.

Each change to sessions adds an entry to the stream (XADD) in the same script as the change. In every
process a background reader, on a connection of its own, asks for what came after the last entry it
saw (XREAD BLOCK ``BLOCK``): each entry moves this process's mark, and each answer, even an empty
one, is a heartbeat. A cut connection is opened again and the read resumes from the last entry seen,
so a change made while it was cut is still caught up on (pub/sub would have lost it).

``mark()`` is pure memory: the number of entries (and wipes) seen, or None when the last heartbeat is
older than ``STALE_AFTER``: a worker that cannot hear of changes stops trusting its cache.

A wipe (FLUSHALL, a restart without persistence) empties the stream with everything else. The epoch
key, a random token written whenever it is missing, is read in the same round trip as every XREAD:
a different token is a change (sessions vanished), and the read starts again from the stream's start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from gateway.store.base import StoreUnavailable
from gateway.store.redis_client import TIMEOUT, translated

__all__ = ["BLOCK", "MAXLEN", "STALE_AFTER", "StreamFeed", "stream_id"]

BLOCK = 0.25  # seconds each XREAD waits for news: a heartbeat at least this often
STALE_AFTER = 0.6  # seconds without a heartbeat after which the mark is None
MAXLEN = 5000  # entries kept (about): enough for any reader's catch-up after a short cut
READ_COUNT = 1000  # entries taken per read; any entry at all moves the mark
RECONNECT_DELAYS = (0.0, 0.05, 0.1, 0.25, 0.5)  # back-off between attempts while Redis is away

log = logging.getLogger("gateway.store")

StreamId = tuple[int, int]


def stream_id(text: object) -> StreamId:
    """``"1712345678901-3"`` as a comparable pair; ValueError for anything else."""
    if not isinstance(text, str):
        raise ValueError(f"not a stream entry id: {text!r}")
    millis, _, sequence = text.partition("-")
    if not (millis.isascii() and millis.isdigit() and sequence.isascii() and sequence.isdigit()):
        raise ValueError(f"not a stream entry id: {text!r}")
    return int(millis), int(sequence)


def new_epoch() -> str:
    """A token nobody has seen: whoever writes the epoch after a wipe, it differs from the last one."""
    return secrets.token_hex(16)


def entry_ids(reply: Any) -> list[StreamId]:
    """The ids of the entries in an XREAD reply (RESP2: ``[[stream, [(id, fields), ...]]]``)."""
    if not isinstance(reply, list):
        raise ValueError("XREAD answered something else than a list")
    found: list[StreamId] = []
    for stream in reply:
        if not isinstance(stream, list | tuple) or len(stream) != 2 or not isinstance(stream[1], list):
            raise ValueError("XREAD answered a malformed stream")
        for entry in stream[1]:
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                raise ValueError("XREAD answered a malformed entry")
            found.append(stream_id(entry[0]))
    return found


class StreamFeed:
    """A ``ChangeFeed`` over the stream ``stream``, read on ``reader`` (a client of its own, whose read
    timeout allows for the BLOCK); ``commands`` is the client entries are added with."""

    def __init__(self, commands: aioredis.Redis, reader: aioredis.Redis, *, stream: str, epoch: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._commands = commands
        self._reader = reader
        self._stream = stream
        self._epoch_key = epoch
        self._clock = clock
        self._epoch: str | None = None
        self._last: StreamId = (0, 0)
        self._count = 0
        self._wipes = 0
        self._heartbeat: float | None = None
        self._progress = asyncio.Event()  # set (and replaced) after every heartbeat
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def mark(self) -> int | None:
        if self._heartbeat is None or self._clock() - self._heartbeat > STALE_AFTER:
            return None
        return self._count

    async def open(self) -> None:
        """Start reading after the newest entry now (what came before is no news)."""
        async with translated("opening the change feed"):
            pipe = self._commands.pipeline(transaction=False)
            pipe.set(self._epoch_key, new_epoch(), nx=True)
            pipe.get(self._epoch_key)
            pipe.xrevrange(self._stream, "+", "-", count=1)
            _, epoch, newest = await pipe.execute()
            if not isinstance(epoch, str) or not isinstance(newest, list):
                raise StoreUnavailable("opening the change feed: Redis answered garbage")
            self._epoch = epoch
            self._last = stream_id(newest[0][0]) if newest else (0, 0)
        self._heartbeat = self._clock()  # this answer vouches as a heartbeat would
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="redis change feed")

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        # One cancel is not always enough: Python 3.11's wait_for (which redis-py sends with)
        # swallows a cancellation that lands just as the write completes, and the reader goes on.
        # It stops at its next round anyway (``_closing``); until then, ask again.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.1)
        self._heartbeat = None
        await self._reader.aclose()

    async def publish(self) -> None:
        async with translated("publishing a change"):
            entry = await self._commands.xadd(self._stream, {"change": "publish"}, maxlen=MAXLEN, approximate=True)
        await self.seen(entry)

    async def seen(self, entry: object) -> None:
        """Return once this process's mark shows the stream entry ``entry`` (an id XADD gave), or
        once the feed stops vouching (then no cache here serves anything older either)."""
        target = stream_id(entry)
        wipes = self._wipes
        deadline = self._clock() + TIMEOUT
        while self._last < target and self._wipes == wipes:
            if self.mark() is None:
                return
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise StoreUnavailable("the change feed did not show a change in time")
            progress = self._progress
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, STALE_AFTER)):
                    await progress.wait()

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            try:
                await self._read()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # whatever the server or the network did: try again, never die
                if failures == 0:
                    log.warning("the Redis change feed cannot read the stream (%s): the session cache is off "
                                "until it can", type(exc).__name__)
                delay = RECONNECT_DELAYS[min(failures, len(RECONNECT_DELAYS) - 1)]
                failures += 1
                with contextlib.suppress(Exception):
                    await self._reader.connection_pool.disconnect()  # a fresh connection next time
                await asyncio.sleep(delay)  # a back-off between attempts, not synchronisation
            else:
                if failures:
                    log.info("the Redis change feed is back")

    async def _read(self) -> None:
        """One heartbeat: the epoch (written when missing) and what came after the last entry."""
        # Bounded by the reader's socket timeout (BLOCK + TIMEOUT), not by a task-cancelling timeout
        # around it: see close().
        pipe = self._reader.pipeline(transaction=False)
        pipe.set(self._epoch_key, new_epoch(), nx=True)
        pipe.get(self._epoch_key)
        pipe.xread({self._stream: f"{self._last[0]}-{self._last[1]}"}, count=READ_COUNT, block=int(BLOCK * 1000))
        _, epoch, reply = await pipe.execute()
        if not isinstance(epoch, str) or not epoch:
            raise ValueError("the epoch key holds no token")
        ids = entry_ids(reply)
        self._count += len(ids)
        if ids:
            self._last = max(self._last, *ids)
        if epoch != self._epoch:
            # Emptied or restarted: sessions may have vanished, and the new stream's entries may
            # have ids below the last one seen. Read it again from its start.
            log.warning("Redis was emptied or restarted: every cached session is dropped")
            self._epoch = epoch
            self._count += 1
            self._wipes += 1
            self._last = (0, 0)
        self._heartbeat = self._clock()
        self._progress.set()
        self._progress = asyncio.Event()
