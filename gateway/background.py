"""Work a process does beside its requests: one named asyncio task, started and stopped with it.

The audit writer, the idle clock, the policy watcher and the policy follower each run one; they
share how it starts, how it stops (cancelled, then awaited, so nothing outlives the lifespan) and,
for the periodic ones, a loop that survives any one failed round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

__all__ = ["BackgroundTask", "every"]


class BackgroundTask:
    def __init__(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        self._name = name
        self._body = body
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def _run(self) -> None:
        await self._body()

    async def stop(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def every(interval: float, step: Callable[[], Awaitable[object]], log: logging.Logger,
          failure: str) -> Callable[[], Awaitable[None]]:
    """A body for BackgroundTask: ``step`` every ``interval`` seconds for ever; a round that raises
    is logged (``failure``, with its traceback) and the next one runs as usual."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except Exception:
                log.exception("%s", failure)

    return loop
