"""The Host header, checked before anything reads it (pure).

The Host a client sends is copied into ``X-Forwarded-Host``, the app's own ``Host`` (when it is
preserved), rewritten ``Location`` headers and the public origin the sign-in pages compare
``Origin`` with. So it is checked first: exactly one (RFC 9112 3.2: a server MUST answer 400 to an
HTTP/1.1 request with none or several), syntactically a host with an optional port and nothing
else (no userinfo, spaces or paths), and, when the operator named the public host(s), one of them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.errors import BadRequest

# A registered name (letters, digits, '-', '_', '.'), an IPv4 address, or a bracketed IPv6 one,
# then an optional port.
_HOST_VALUE = re.compile(rb"(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


@dataclass(frozen=True, slots=True)
class HostRules:
    """The accepted Host values, lower case: ``exact`` host:port pairs, and ``names`` that match
    whatever the port. Both empty: any well-formed Host."""

    exact: frozenset[bytes] = frozenset()
    names: frozenset[bytes] = frozenset()

    @classmethod
    def from_settings(cls, hosts: Sequence[str], public_url: str | None) -> HostRules:
        exact: set[bytes] = set()
        names: set[bytes] = set()
        if public_url:
            parts = urlsplit(public_url)
            default = {"http": 80, "https": 443}[parts.scheme]
            netloc = parts.netloc.lower()
            exact.add(netloc.encode())
            if parts.port in (None, default):  # browsers leave the default port out, some clients write it
                host = netloc.rsplit(":", 1)[0] if parts.port else netloc
                exact.update({host.encode(), f"{host}:{default}".encode()})
        for entry in hosts:
            _, colon, port = entry.rpartition(":") if not entry.endswith("]") else ("", "", "")
            (exact if colon and port.isdigit() else names).add(entry.lower().encode())
        return cls(frozenset(exact), frozenset(names))

    @property
    def restricted(self) -> bool:
        return bool(self.exact or self.names)

    def allows(self, host: bytes) -> bool:
        folded = host.lower()
        if folded in self.exact or folded in self.names:
            return True
        name = folded.rsplit(b":", 1)[0] if not folded.endswith(b"]") else folded
        return name in self.names


@functools.lru_cache(maxsize=1024)
def _well_formed(value: bytes) -> bool:
    if _HOST_VALUE.fullmatch(value) is None or b".." in value:
        return False
    port = value.rpartition(b":")[2] if not value.endswith(b"]") and b":" in value.lstrip(b"[") else b""
    return not port or 0 < int(port) < 65536


def check_host(headers: Sequence[tuple[bytes, bytes]], rules: HostRules, http_version: str = "1.1") -> bytes:
    """The request's one Host value; raises BadRequest for none (HTTP/1.1), several, a malformed
    one, or one the operator did not list. HTTP/1.0 may omit it (then b"" is returned) unless the
    public host is restricted."""
    found: bytes | None = None
    for name, value in headers:
        if name == b"host":
            if found is not None:
                raise BadRequest("More than one Host header.")
            found = value
    if found is None:
        if http_version == "1.0" and not rules.restricted:
            return b""
        raise BadRequest("The Host header is missing.")
    if not _well_formed(found):
        raise BadRequest("Malformed Host header.")
    if rules.restricted and not rules.allows(found):
        raise BadRequest("Unknown host.")
    return found


def check_forwarded_host(values: Sequence[bytes], rules: HostRules) -> None:
    """A trusted proxy's X-Forwarded-Host lines: every host in them well formed, and the one the
    gateway uses (the last) one of the public hosts when they are listed. A proxy that copies its
    client's header (``proxy_set_header X-Forwarded-Host $http_x_forwarded_host``) must not be a
    way around the Host check."""
    last: bytes | None = None
    for value in values:
        for item in value.split(b","):
            host = item.strip()
            if not _well_formed(host):
                raise BadRequest("Malformed X-Forwarded-Host header.")
            last = host
    if last is not None and rules.restricted and not rules.allows(last):
        raise BadRequest("Unknown host.")
