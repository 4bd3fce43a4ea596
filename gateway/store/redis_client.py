"""Reaching Redis for the session store: the ``redis://`` URL, the clients, and the one place where
whatever redis-py raises becomes a ``StoreError``.

Every command is bounded: connecting, each read and each whole operation take at most ``TIMEOUT``,
and nothing is retried (a retry would only hide an outage for longer: the request gets its 503 and
the next one tries again). A server that answers garbage can make the client library raise almost
anything; all of it is ``StoreUnavailable`` here, never a crash or a bare 500.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ResponseError

from gateway.config.parsers import redacted_url
from gateway.store.base import StoreError, StoreUnavailable

__all__ = ["DEFAULT_PREFIX", "MAX_CONNECTIONS", "TIMEOUT", "RedisUrl", "connect", "parse_redis_url", "translated"]

TIMEOUT = 2.0  # seconds: a hung or lost server costs a request no more than this
MAX_CONNECTIONS = 64  # per client and process: ~64 commands in flight, each well under a millisecond
DEFAULT_PREFIX = "gateway:"
# Replies that mean the data is damaged (a key of the wrong type, a record our scripts refuse), not
# that the server is unavailable: retrying will not help.
DAMAGED = ("WRONGTYPE", "DAMAGED")


@dataclass(frozen=True, slots=True)
class RedisUrl:
    url: str  # what redis-py is given (our own options removed)
    prefix: str  # put before every key, so that several gateways (or other apps) can share a server
    shown: str  # for messages: the URL without its password


def parse_redis_url(url: str) -> RedisUrl:
    """``redis://[[user]:password@]host[:port][/db][?prefix=P]`` (or ``rediss://`` for TLS); other
    query options are redis-py's own. Raises StoreError with one line for a URL that cannot work."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise StoreError(f"{redacted_url(url)!r}: not a Redis URL (redis://host:port/db)")  # never the password
    options = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in options if name == "prefix"]
    prefix = prefixes[-1] if prefixes else DEFAULT_PREFIX
    if not prefix or not prefix.isprintable() or " " in prefix:
        raise StoreError(f"redis://{parts.hostname}: prefix must be printable text without spaces")
    try:
        port = parts.port
    except ValueError:
        raise StoreError(f"redis://{parts.hostname}: the port is not a number") from None
    netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
    shown = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    rest = urlencode([(name, value) for name, value in options if name != "prefix"])
    return RedisUrl(url=urlunsplit((parts.scheme, parts.netloc, parts.path, rest, "")), prefix=prefix, shown=shown)


def connect(url: RedisUrl, *, read_timeout: float = TIMEOUT, name: str | None = None,
            max_connections: int = MAX_CONNECTIONS) -> aioredis.Redis:
    """A client with its own pool of at most ``max_connections`` (nothing is sent until the first
    command). When all are busy a command waits for one (within the timeout): the default pool
    would refuse it at once, a 503 for a mere burst of lookups. RESP2 and text replies: the reply
    shapes the store checks do not depend on the server's protocol version."""
    try:
        pool = aioredis.BlockingConnectionPool.from_url(
            url.url, max_connections=max_connections, timeout=TIMEOUT, decode_responses=True, protocol=2,
            socket_connect_timeout=TIMEOUT, socket_timeout=read_timeout, retry=Retry(NoBackoff(), 0),
            client_name=name, driver_info=None,
        )
    except (ValueError, TypeError) as exc:  # an option in the URL redis-py does not know or accept
        raise StoreError(f"{url.shown}: {exc}") from exc
    client: aioredis.Redis = aioredis.Redis.from_pool(pool)
    return client


@contextlib.asynccontextmanager
async def translated(what: str, timeout: float = TIMEOUT) -> AsyncIterator[None]:
    """Run Redis commands for ``what`` within ``timeout``; any failure leaves as a StoreError."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except StoreError:
        raise
    except ResponseError as exc:
        if str(exc).startswith(DAMAGED):
            raise StoreError(f"{what}: damaged data in Redis: {exc}") from exc
        raise StoreUnavailable(f"{what}: Redis refused: {exc}") from exc
    except TimeoutError as exc:
        raise StoreUnavailable(f"{what}: Redis did not answer within {timeout:g} s") from exc
    except Exception as exc:  # a garbage answer can surface as any exception from the parser
        raise StoreUnavailable(f"{what}: Redis failed: {type(exc).__name__}: {exc}") from exc
