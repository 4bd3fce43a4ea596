"""Who the client is and which origin it used, believing X-Forwarded-* only from trusted proxies (pure).

Every way in (the proxy path, the WebSocket handshake, the Quart pages) asks ``TrustedProxies``, built
once from ``[server] trusted_proxies`` and ``public_url``, so all of them judge a request alike.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config import Network
from gateway.http.headers import all_values, first_value, last_value

__all__ = ["TrustedProxies", "client_address", "is_trusted", "peer_of", "public_origin"]

# A WebSocket handshake's origin is an http(s) one (browsers send Origin: https://..., never wss://).
_HTTP_SCHEME = {"ws": "http", "wss": "https"}


def is_trusted(address: str | None, networks: Sequence[Network]) -> bool:
    if not address or not networks:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_address(peer: str | None, forwarded_for: Sequence[str], networks: Sequence[Network]) -> str:
    """The real client: the peer, or behind trusted proxies the right-most untrusted X-Forwarded-For hop."""
    if not is_trusted(peer, networks):
        return peer or ""
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer or ""


def _last(value: str | None) -> str:
    """The right-most item: the one our trusted peer set, even when it appended to a client's copy."""
    return (value or "").rsplit(",", 1)[-1].strip()


def public_origin(
    *,
    public_url: str | None,
    scheme: str,
    host: str,
    peer: str | None,
    forwarded_proto: str | None,
    forwarded_host: str | None,
    networks: Sequence[Network],
) -> str:
    """The origin the browser used: [server] public_url, else a trusted proxy's word, else our own view.

    ``forwarded_proto``/``forwarded_host`` are the LAST such header lines: only the peer's own word
    counts, so a client's copy that a proxy appended to (or added a line after) never wins."""
    if public_url:
        return public_url
    if is_trusted(peer, networks):
        proto = _last(forwarded_proto).lower()
        if proto in ("http", "https"):
            scheme = proto
        host = _last(forwarded_host) or host
    return f"{scheme}://{host}"


def peer_of(scope: Mapping[str, Any]) -> str | None:
    """The address of the connection's other end, as the server reports it."""
    client = scope.get("client")
    return client[0] if client else None


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


@dataclass(frozen=True, slots=True)
class TrustedProxies:
    """``[server] trusted_proxies`` and ``public_url``, applied to one request's scope."""

    networks: tuple[Network, ...] = ()
    public_url: str | None = None

    def trusts(self, address: str | None) -> bool:
        return is_trusted(address, self.networks)

    def client_of(self, scope: Mapping[str, Any]) -> str:
        """The real client: the peer, or behind a trusted proxy the address it names."""
        peer = peer_of(scope)
        if not self.networks:
            return peer or ""
        forwarded_for = [value.decode("latin-1") for value in all_values(scope["headers"], b"x-forwarded-for")]
        return client_address(peer, forwarded_for, self.networks)

    def origin_of(self, scope: Mapping[str, Any]) -> str:
        """The origin the browser used for this request (HTTP or WebSocket handshake)."""
        headers = scope["headers"]
        scheme: str = scope.get("scheme", "http")
        return public_origin(
            public_url=self.public_url, scheme=_HTTP_SCHEME.get(scheme, scheme),
            host=_text(first_value(headers, b"host")) or "", peer=peer_of(scope),
            forwarded_proto=_text(last_value(headers, b"x-forwarded-proto")),
            forwarded_host=_text(last_value(headers, b"x-forwarded-host")), networks=self.networks,
        )
