"""CSRF tokens for the gateway's forms, and the Origin check.

The token is an HMAC of a random value kept in its own HttpOnly cookie (a signed double submit):
it works before there is a session (the sign-in form) and an attacker who cannot read the cookie
cannot compute the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

BINDING_BYTES = 32


class Csrf:
    def __init__(self, secret_key: str) -> None:
        # A key of its own, so a CSRF token can never double as any other signature.
        self._key = hmac.new(secret_key.encode(), b"gateway csrf v1", hashlib.sha256).digest()

    @staticmethod
    def new_binding() -> str:
        return secrets.token_urlsafe(BINDING_BYTES)

    def token_for(self, binding: str) -> str:
        mac = hmac.new(self._key, binding.encode("utf-8", "replace"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).decode().rstrip("=")

    def check(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token or len(binding) > 128 or len(token) > 128:
            return False
        return hmac.compare_digest(self.token_for(binding).encode(), token.encode("utf-8", "replace"))


def origin_allowed(origin: str | None, expected: str) -> bool:
    """False when the browser says the form was posted from another origin than ``expected``.

    No Origin header (old browsers, some same-origin requests) leaves the CSRF token as the guard;
    "null" (sandboxed frames, file:, privacy redirects) is refused. Scheme, host and port must all
    match, default ports being equal to none.
    """
    if origin is None:
        return True
    key = _origin_key(origin.strip())
    return key is not None and key == _origin_key(expected)


def _origin_key(origin: str) -> tuple[str, str, int] | None:
    parts = urlsplit(origin)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, parts.hostname.lower(), port


_DEFAULT_PORTS = {"http": 80, "https": 443}
