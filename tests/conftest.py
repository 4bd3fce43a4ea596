"""What every tier shares."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Iterator

import pytest
from httpx._transports import default as httpx_transports

from tests.servers import PostgresServer, RedisServer

# Every httpx client builds a TLS context with the CA bundle loaded (~30 ms of CPU), even for an
# http:// URL, and the suite makes thousands of clients (a fresh connection per request, a client per
# signed-in user). Clients that verify with the default bundle share one context instead; a client
# given its own verify or cert (the TLS tests) still gets its own.
_build_context = httpx_transports.create_ssl_context


@functools.cache
def _default_context(trust_env: bool) -> ssl.SSLContext:
    return _build_context(verify=True, cert=None, trust_env=trust_env)


def _shared_context(verify: ssl.SSLContext | str | bool = True, cert: object = None,
                    trust_env: bool = True) -> ssl.SSLContext:
    if verify is True and cert is None:
        return _default_context(trust_env)
    return _build_context(verify=verify, cert=cert, trust_env=trust_env)  # type: ignore[arg-type]


httpx_transports.create_ssl_context = _shared_context  # type: ignore[assignment]


# One throwaway server of each kind per pytest process (each xdist worker has its own), started the
# first time a test asks for it. Tests take a fresh database (``postgres_server.create_database()``)
# or flush Redis, so nothing leaks between them.
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    with PostgresServer.running() as server:
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer.running() as server:
        yield server
