"""The default upstream transport: aiohttp's client connection pool, driven for a proxy.

Why not httpx-aiohttp's: it hands aiohttp the URL as text, and aiohttp (yarl) re-normalises it
(``?q=%2F`` becomes ``?q=/``), so the upstream would not get exactly the target the policy decided
on; and it reports a dropped connection as a connect timeout. Here the URL goes through as already
encoded, no header is added or changed, nothing is decompressed, no cookie is kept, and aiohttp's
exceptions become httpx's where they enter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import httpx
from multidict import CIMultiDict
from yarl import URL

from gateway.proxy.forward import HeaderList, Timeouts, UpstreamResponse

CHUNK = 64 * 1024


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.content.iter_chunked(CHUNK):
            yield chunk
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc)) from exc
    except aiohttp.ClientError as exc:
        raise httpx.ReadError(str(exc)) from exc


class AiohttpTransport:
    def __init__(self, max_connections: int, keepalive: float = 30.0) -> None:
        self._max_connections = max_connections
        self._keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: tuple[Timeouts, aiohttp.ClientTimeout] | None = None

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
        outgoing = CIMultiDict(
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in headers
            if name.lower() != b"transfer-encoding"  # aiohttp frames a streamed body itself
        )
        try:
            response = await self._client().request(
                method,
                URL(url, encoded=True),
                headers=outgoing,
                data=body,
                allow_redirects=False,
                compress=None,
                timeout=self._timeout(timeouts),
            )
        except aiohttp.ClientConnectorError as exc:
            raise httpx.ConnectError(str(exc)) from exc
        except aiohttp.ConnectionTimeoutError as exc:
            raise httpx.ConnectTimeout(str(exc)) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout(str(exc)) from exc
        except aiohttp.ClientError as exc:
            raise httpx.RemoteProtocolError(str(exc)) from exc
        except ValueError as exc:  # a header aiohttp will not write (control characters): the client's fault
            raise httpx.LocalProtocolError(str(exc)) from exc

        async def close() -> None:
            response.release()

        return UpstreamResponse(response.status, list(response.raw_headers), _chunks(response), close)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
