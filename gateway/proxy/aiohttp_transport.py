"""The default upstream transport: aiohttp's client connection pool, driven for a proxy.

Why not httpx-aiohttp's: it hands aiohttp the URL as text, and aiohttp (yarl) re-normalises it
(``?q=%2F`` becomes ``?q=/``), so the upstream would not get exactly the target the policy decided
on; and it reports a dropped connection as a connect timeout. Here the URL goes through as already
encoded, no header is added or changed, nothing is decompressed, no cookie is kept, and aiohttp's
exceptions become the proxy's own (proxy/errors.py) where they enter.

The pool is bounded by a semaphore of our own rather than by aiohttp's connector alone: aiohttp
reports a wait for a free connection as a connect timeout, so a busy pool would answer 504 (the
app is slow) where the gateway means 503 (it is itself overloaded). A slot is held from the
request until its response is closed, exactly as long as aiohttp holds the connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from gateway.http import HeaderList
from gateway.proxy.errors import (
    RequestNotForwardable,
    UpstreamConnectError,
    UpstreamPoolFull,
    UpstreamProtocolError,
    UpstreamReadError,
    UpstreamTimeout,
)
from gateway.proxy.transport import Timeouts, UpstreamResponse

__all__ = ["AiohttpTransport"]

CHUNK = 64 * 1024


class _WriteWatch:
    """The streamed request body, with [upstream] write_timeout applied: aiohttp has no write timeout,
    and starts its read timeout only once the body is sent, so an app that stops taking the body
    would otherwise hold the request (and a pool slot) for ever. The clock runs only while aiohttp
    is writing a chunk out, never while the client is slow to send the next one."""

    def __init__(self, chunks: AsyncIterable[bytes], limit: float) -> None:
        self._chunks = chunks
        self._limit = limit
        self._task = asyncio.current_task()  # the one waiting for the response head
        self.expired = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        async for chunk in self._chunks:
            timer = loop.call_later(self._limit, self._expire)
            try:
                yield chunk  # resumed when aiohttp has written it and wants the next
            finally:
                timer.cancel()

    def _expire(self) -> None:
        if self._task is not None:
            self.expired = True
            self._task.cancel()

    def detach(self) -> None:
        """The response head is in: a write stalling now must not cancel the task relaying it."""
        self._task = None


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            yield chunk
    except TimeoutError as exc:
        raise UpstreamTimeout("ReadTimeout") from exc
    except aiohttp.ClientError as exc:
        raise UpstreamReadError(str(exc)) from exc


class AiohttpTransport:
    def __init__(self, max_connections: int, keepalive: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: tuple[Timeouts, aiohttp.ClientTimeout] | None = None
        self._slots = asyncio.Semaphore(max_connections)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:  # created inside the running loop, on first use
            connector = aiohttp.TCPConnector(limit=self._max_connections, keepalive_timeout=self._keepalive)
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=False,
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept", "Content-Type"),
            )
        return self._session

    def _timeout(self, timeouts: Timeouts) -> aiohttp.ClientTimeout:
        if self._timeouts is None or self._timeouts[0] is not timeouts:  # the same dict on every request
            self._timeouts = (timeouts, aiohttp.ClientTimeout(
                total=None, sock_connect=timeouts.get("connect"), sock_read=timeouts.get("read"),
                connect=timeouts.get("pool"),
            ))
        return self._timeouts[1]

    async def send(
        self, method: str, url: str, headers: HeaderList, body: AsyncIterator[bytes] | None, timeouts: Timeouts
    ) -> UpstreamResponse:
        slots = self._slots
        if slots.locked():  # only a full pool pays for the timer
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await slots.acquire()
            except TimeoutError as exc:
                raise UpstreamPoolFull("every upstream connection is busy") from exc
        else:
            await slots.acquire()  # returns at once
        try:
            response = await self._send(method, url, headers, body, timeouts)
        except BaseException:
            slots.release()
            raise
        released = False

        async def close() -> None:
            nonlocal released
            response.release()
            if not released:  # once, however often the response is closed
                released = True
                slots.release()

        return UpstreamResponse(response.status, list(response.raw_headers), _chunks(response), close)

    async def _send(
        self, method: str, url: str, headers: HeaderList, body: AsyncIterator[bytes] | None, timeouts: Timeouts
    ) -> aiohttp.ClientResponse:
        outgoing = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name.lower() != b"transfer-encoding"  # aiohttp frames a streamed body itself
        )
        data: AsyncIterable[bytes] | None = body
        watch: _WriteWatch | None = None
        if body is not None and (write_timeout := timeouts.get("write")):
            data = watch = _WriteWatch(body, write_timeout)
        try:
            return await self._client().request(
                method,
                URL(url, encoded=True),
                headers=outgoing,
                data=data,
                allow_redirects=False,
                compress=None,
                timeout=self._timeout(timeouts),
            )
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamConnectError(str(exc)) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise UpstreamTimeout("ConnectTimeout") from exc
        except TimeoutError as exc:
            raise UpstreamTimeout("ReadTimeout") from exc
        except aiohttp.ClientError as exc:
            raise UpstreamProtocolError(str(exc)) from exc
        except ValueError as exc:  # a header aiohttp will not write (control characters): the client's fault
            raise RequestNotForwardable(str(exc)) from exc
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if watch is not None and watch.expired and task is not None and task.uncancel() == 0:
                raise UpstreamTimeout("WriteTimeout") from None
            raise
        finally:
            if watch is not None:
                watch.detach()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
