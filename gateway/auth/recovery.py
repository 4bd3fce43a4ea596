"""Recovery codes: the way back in when the phone with the authenticator app is lost.

A set is 10 codes of 12 characters shown as xxxx-xxxx-xxxx, from an alphabet without look-alikes
(no 0/o, 1/l/i), so people can copy them from paper. 12 characters of a 31-letter alphabet are 59
bits each: far beyond guessing under the sign-in throttle, so a fast keyed digest (HMAC-SHA-256 with
a key derived from the server secret) is enough; no password hash, and a stolen store alone cannot
check guesses offline. Single use and "regenerating voids the old set" are the store's job: it keeps
only the digests and deletes one when it is used.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

__all__ = ["ALPHABET", "CODE_COUNT", "GROUP", "GROUPS", "digest", "new_codes", "normalise"]

ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # 31 letters: no 0 o 1 l i
# 31 ** 12 is about 2 ** 59.4
CODE_COUNT = 10
GROUP = 4
GROUPS = 3
_KEY_LABEL = b"gateway recovery codes v1"


def new_codes(count: int = CODE_COUNT) -> list[str]:
    """A fresh set of codes in their display form."""
    return [_new_code() for _ in range(count)]


def _new_code() -> str:
    letters = "".join(secrets.choice(ALPHABET) for _ in range(GROUP * GROUPS))
    return "-".join(letters[i:i + GROUP] for i in range(0, len(letters), GROUP))


def normalise(text: str) -> str | None:
    """A typed code in canonical form (lower case, no spaces or dashes), or None if it cannot be one."""
    cleaned = "".join(text.split()).replace("-", "").lower()
    if len(cleaned) != GROUP * GROUPS or any(ch not in ALPHABET for ch in cleaned):
        return None
    return cleaned


def digest(server_secret: bytes, code: str) -> str | None:
    """The keyed digest stored for a code (hex), or None if the text cannot be a code.

    The key is derived from the server secret for this purpose alone, so the digest is useless for
    anything else the secret signs.
    """
    canonical = normalise(code)
    if canonical is None:
        return None
    key = hmac.new(server_secret, _KEY_LABEL, hashlib.sha256).digest()
    return hmac.new(key, canonical.encode("ascii"), hashlib.sha256).hexdigest()
