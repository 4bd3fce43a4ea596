"""Absolute URLs in the app's response headers that name the app's own address, rewritten to the
gateway's public origin (pure).

An app that builds absolute URLs from its own address (behind ``upstream.preserve_host = false``,
or one configured with its own base URL) would send the browser around the gateway. The headers
that carry URLs are rewritten: ``Location``, ``Content-Location``, ``Link`` (every ``<URI>``) and
``Refresh`` (its ``url=``). A URL names the app when its scheme and port are the upstream's and its
host is the configured one or a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``), which is how
apps name themselves when they listen there. URLs inside bodies cannot be rewritten (the gateway
streams bodies untouched); keeping ``upstream.preserve_host`` on is the answer for those.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
REWRITTEN = frozenset({b"location", b"content-location", b"link", b"refresh"})
_LINK_TARGET = re.compile(rb"<([^>]*)>")
_REFRESH_URL = re.compile(rb"(?i)(url\s*=\s*['\"]?)([^'\"\s;,]+)")
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class UpstreamAddresses:
    scheme: str
    port: int
    hosts: frozenset[str]

    def names(self, parts: SplitResult) -> bool:
        if parts.scheme.lower() != self.scheme:
            return False
        try:
            port = parts.port or _DEFAULT_PORTS.get(self.scheme)
        except ValueError:
            return False
        return port == self.port and (parts.hostname or "") in self.hosts


@functools.lru_cache(maxsize=8)
def upstream_addresses(upstream_origin: str) -> UpstreamAddresses:
    parts = urlsplit(upstream_origin)
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS[scheme]
    return UpstreamAddresses(scheme, port, frozenset({(parts.hostname or "").lower(), *LOOPBACK_NAMES}))


def rewrite_url(url: bytes, addresses: UpstreamAddresses, public_origin: str) -> bytes:
    """http://127.0.0.1:8081/x (the upstream's own address) -> https://gateway.example/x; else unchanged."""
    text = url.decode("latin-1")
    parts = urlsplit(text)
    if not parts.netloc or not addresses.names(parts):
        return url
    rest = text[len(parts.scheme) + 3 + len(parts.netloc):]
    return (public_origin + (rest or "/")).encode("latin-1")


def rewrite_header(name: bytes, value: bytes, upstream_origin: str, public_origin: str) -> bytes:
    """``value`` of response header ``name`` (lower case, one of REWRITTEN) with the app's own
    absolute URLs pointing at the gateway instead."""
    addresses = upstream_addresses(upstream_origin)
    if name == b"link":
        return _LINK_TARGET.sub(lambda m: b"<" + rewrite_url(m.group(1).strip(), addresses, public_origin) + b">", value)
    if name == b"refresh":
        return _REFRESH_URL.sub(lambda m: m.group(1) + rewrite_url(m.group(2), addresses, public_origin), value)
    return rewrite_url(value.strip(), addresses, public_origin)
