"""Time-based one-time passwords (RFC 6238 over RFC 4226): the authenticator-app second factor.

Pure: no store, no clock of its own (callers pass the time, so tests and the fake clock drive it).
Fixed parameters, the ones every authenticator app understands: HMAC-SHA-1, 6 digits, 30 s steps.
A code is accepted for the current step and one step either side (clock skew of phones); which step
matched is returned so the store can refuse a second use of the same step (single use is the
store's job, atomic across workers and replicas, not this module's).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

__all__ = ["DIGITS", "SECRET_BYTES", "SKEW", "STEP", "code_at", "decode_secret", "encode_secret",
           "match", "new_secret", "normalise_code", "provisioning_uri", "step_of"]

STEP = 30  # seconds per code: RFC 6238's default, the only value every app supports
DIGITS = 6
SKEW = 1  # steps accepted either side of the current one
SECRET_BYTES = 20  # 160 bits: RFC 4226's recommended length for HMAC-SHA-1


def new_secret() -> bytes:
    """A fresh random TOTP key."""
    return secrets.token_bytes(SECRET_BYTES)


def encode_secret(secret: bytes) -> str:
    """The key as people type it and as otpauth:// carries it: base32, no padding."""
    return base64.b32encode(secret).decode("ascii").rstrip("=")


def decode_secret(text: str) -> bytes:
    """The key back from its text form; spaces, dashes and lower case are forgiven (people retype it).

    Raises ValueError for anything that is not base32.
    """
    cleaned = "".join(text.split()).replace("-", "").upper()
    if not cleaned:
        raise ValueError("empty TOTP key")
    padded = cleaned + "=" * (-len(cleaned) % 8)
    try:
        return base64.b32decode(padded, casefold=False)
    except (ValueError, binascii.Error) as exc:
        raise ValueError("TOTP key is not base32") from exc


def step_of(now: float) -> int:
    """The step number a Unix time falls in."""
    return int(now // STEP)


def code_at(secret: bytes, step: int) -> str:
    """The code for one step (RFC 4226 HOTP with the step as counter, dynamic truncation)."""
    digest = hmac.new(secret, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def normalise_code(text: str) -> str | None:
    """A typed code with spaces removed (apps show "123 456"); None unless exactly DIGITS digits."""
    cleaned = "".join(text.split())
    if len(cleaned) != DIGITS or not cleaned.isascii() or not cleaned.isdigit():
        return None
    return cleaned


def match(secret: bytes, code: str, now: float) -> int | None:
    """The step a code is valid for at `now` (within ±SKEW steps), or None.

    Every candidate step is compared, in constant time, so the answer's timing does not say which
    step (or whether any) matched.
    """
    typed = normalise_code(code)
    if typed is None:
        return None
    current = step_of(now)
    found: int | None = None
    for step in range(current - SKEW, current + SKEW + 1):
        if step >= 0 and hmac.compare_digest(code_at(secret, step), typed) and found is None:
            found = step
    return found


def provisioning_uri(secret: bytes, account: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app scans (Google's Key Uri Format).

    The label is "issuer:account" and the issuer is repeated as a parameter, as apps expect.
    """
    label = quote(f"{issuer}:{account}", safe=":@")
    query = urlencode({"secret": encode_secret(secret), "issuer": issuer, "algorithm": "SHA1",
                       "digits": str(DIGITS), "period": str(STEP)}, quote_via=quote)
    return f"otpauth://totp/{label}?{query}"
