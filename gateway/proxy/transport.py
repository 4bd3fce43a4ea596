"""The one method the proxy needs from an upstream client: send one request, get its answer's head
and a body stream. A proxy needs none of an HTTP client's policy layer (redirects, auth, the shared
cookie jar that would leak one user's cookies to another), hence raw headers and a plain URL string.

A transport raises only proxy/errors.py's ``UpstreamError``s, translated where they enter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.http import HeaderList

__all__ = ["Timeouts", "Transport", "UpstreamResponse"]

Timeouts = dict[str, float]  # "connect", "read", "write", "pool": seconds


@dataclass(slots=True)
class UpstreamResponse:
    """The upstream's answer: status, raw headers (names as sent), and the body as it arrives."""

    status: int
    headers: HeaderList
    stream: AsyncIterator[bytes]
    close: Callable[[], Awaitable[None]]

    def header(self, name: bytes) -> bytes | None:
        """The first value of ``name`` (lower case); the upstream's names keep their case."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    async def aclose(self) -> None:
        await self.close()


class Transport(Protocol):
    async def send(
        self, method: str, url: str, headers: HeaderList, body: AsyncIterator[bytes] | None, timeouts: Timeouts
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...
