"""The checks every request target passes first, HTTP request or WebSocket handshake: its length
(414), the method (400), ONE canonical path (400 when ambiguous, see policy/paths.py) and the Host
header (400, see http/host.py)."""

from __future__ import annotations

import functools
import re

from gateway.errors import BadRequest, UriTooLong
from gateway.http.forwarded import TrustedProxies, peer_of
from gateway.http.headers import all_values
from gateway.http.host import HostRules, check_forwarded_host, check_host
from gateway.http.types import Scope
from gateway.policy import CanonicalPath, PathError, canonicalize
from gateway.policy.paths import origin_form

__all__ = ["GATEWAY_PREFIX", "MAX_LOGGED_PATH", "MAX_TARGET_BYTES", "PROBES", "Targets", "is_gateway_page", "raw_target"]

GATEWAY_PREFIX = "/.gateway/"
# Longer targets are refused (as nginx does at 8 KiB); the upstream client refuses them anyway.
MAX_TARGET_BYTES = 8192
MAX_LOGGED_PATH = 1024  # a target refused as malformed is logged cut to this many characters
# Method names are case-sensitive (RFC 9110): "get" is not GET, and a server framing the answer to
# "head" as a GET's while the upstream answers a HEAD would hang the client.
METHOD = re.compile(r"[A-Z][A-Z0-9_-]{0,31}")
# The health probes answer whatever public host is named (a well-formed one): they tell nothing.
PROBES = frozenset({"/.gateway/healthz", "/.gateway/readyz"})
ANY_HOST = HostRules()


@functools.lru_cache(maxsize=4096)
def _canonical(raw_path: bytes, allow_params: bool, case_insensitive: bool) -> CanonicalPath:
    """canonicalize() is pure, and a site's requests repeat a few thousand paths: cached (see
    bench/proxy_bench.py). Refusals (PathError) are not cached."""
    return canonicalize(raw_path, allow_params=allow_params, case_insensitive=case_insensitive)


def raw_target(scope: Scope) -> bytes:
    """The path as the client sent it, in origin form (an absolute-form target is decided by its path)."""
    return origin_form(scope.get("raw_path") or scope["path"].encode())


def is_gateway_page(canonical: CanonicalPath) -> bool:
    """/.gateway and below: the gateway's own pages, never the upstream's."""
    return canonical.decision == "/.gateway" or canonical.decision.startswith(GATEWAY_PREFIX)


class Targets:
    """The target checks, compiled once from the settings."""

    def __init__(self, *, allow_params: bool, case_insensitive: bool, hosts: HostRules, proxies: TrustedProxies) -> None:
        self._allow_params = allow_params
        self._case_insensitive = case_insensitive
        self._hosts = hosts
        self._proxies = proxies

    def canonical(self, raw_path: bytes, query: bytes, method: str | None = None) -> CanonicalPath:
        """Length (414), method (400; HTTP only) and the canonical path (400 when ambiguous)."""
        if len(raw_path) + len(query) > MAX_TARGET_BYTES:
            raise UriTooLong()
        if method is not None and not METHOD.fullmatch(method):
            raise BadRequest("Unknown request method.")
        try:
            return _canonical(raw_path, self._allow_params, self._case_insensitive)
        except PathError as exc:
            raise BadRequest(f"Malformed or ambiguous path: {exc}.") from None

    def check_host(self, scope: Scope, *, listed_only: bool = True) -> None:
        """The Host header: one, well formed, and one of the public hosts when they are listed (400);
        and a trusted proxy's X-Forwarded-Host, which then stands for it, likewise."""
        headers = scope["headers"]
        rules = self._hosts if listed_only else ANY_HOST
        check_host(headers, rules, scope.get("http_version", "1.1"))
        if self._proxies.networks and self._proxies.trusts(peer_of(scope)):
            check_forwarded_host(all_values(headers, b"x-forwarded-host"), rules)
