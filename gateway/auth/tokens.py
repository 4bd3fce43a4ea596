"""Personal access tokens as text: how one is made, recognised and stored (pure; issue 14).

A token reads ``gw_`` + 43 base62 characters (32 random bytes) + 6 base62 characters of CRC32 over
the random part. The prefix lets secret scanners recognise a leaked token; the checksum lets the
gateway refuse a mistyped or made-up token without asking the store. The store never sees a token:
only its keyed digest (HMAC-SHA256 under a key derived from the server's secret), which is fast
enough to compute on every request (no argon2 there) and useless to whoever copies the database
without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zlib

__all__ = ["PREFIX", "TOKEN_LENGTH", "digest_key", "make_token", "token_digest", "well_formed"]

PREFIX = "gw_"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_BYTES = 32
_BODY = 43  # base62 digits that hold any 32-byte number (62**43 > 2**256)
_CHECK = 6  # base62 digits that hold any CRC32 (62**6 > 2**32)
TOKEN_LENGTH = len(PREFIX) + _BODY + _CHECK
_DIGITS = frozenset(_ALPHABET)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(_ALPHABET[digit])
    if number:
        raise ValueError("the number does not fit the width")
    return "".join(reversed(digits))


def _check(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), _CHECK)


def make_token() -> str:
    """A new token: 32 bytes from the system's secure random source, with its checksum."""
    body = _base62(int.from_bytes(secrets.token_bytes(_RANDOM_BYTES), "big"), _BODY)
    return PREFIX + body + _check(body)


def well_formed(text: str) -> bool:
    """The text is shaped as a token and its checksum holds (no store lookup: a typo ends here)."""
    if len(text) != TOKEN_LENGTH or not text.startswith(PREFIX):
        return False
    body, check = text[len(PREFIX):-_CHECK], text[-_CHECK:]
    if not set(body) <= _DIGITS or not set(check) <= _DIGITS:
        return False
    return hmac.compare_digest(check, _check(body))


def digest_key(secret_key: str) -> bytes:
    """The key token digests are made with, derived from the server's secret (and only for this)."""
    return hashlib.sha256(b"gateway personal access token digest\x00" + secret_key.encode()).digest()


def token_digest(token: str, key: bytes) -> str:
    """What the store keeps and looks tokens up by (hex HMAC-SHA256)."""
    return hmac.new(key, token.encode("ascii"), hashlib.sha256).hexdigest()
