"""Password hashing, verification and strength rules.

argon2 takes ~100 ms and 64 MiB per call: it runs in worker threads (it releases the GIL), at most
``max_concurrent`` at once, so a burst of sign-ins neither blocks the event loop nor exhausts memory.
Unknown and disabled users are verified against a dummy hash made at start with the same parameters,
so the time taken does not tell an attacker whether a name exists.

The common-password list is Django's (django/contrib/auth/common-passwords.txt.gz, BSD licence,
originally compiled by Royce Williams).
"""

from __future__ import annotations

import asyncio
import gzip
import secrets
import string
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import pairwise

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.config import PasswordSettings

MIN_LENGTH = 12
MAX_LENGTH = 1024  # bounds the hashing work an attacker can ask for
_EDGE_CHARS = string.digits + string.punctuation + string.whitespace


class WeakPassword(ValueError):
    """The password is refused; the message says why, in words an operator can act on."""


@cache
def _common_passwords() -> frozenset[str]:
    data = resources.files("gateway.auth").joinpath("common-passwords.txt.gz").read_bytes()
    return frozenset(gzip.decompress(data).decode("utf-8").split())


def check_strength(password: str, user_name: str = "") -> None:
    """Raise WeakPassword unless ``password`` is acceptable. The password is used exactly as typed."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password too short: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"password too long: at most {MAX_LENGTH} characters")
    lowered = password.lower()
    # "Password2024!" is "password" dressed up: judge the core without the digits and symbols around it.
    core = lowered.strip(_EDGE_CHARS)
    common = _common_passwords()
    if lowered in common or core in common:
        raise WeakPassword("password too common: choose one that is not on lists of common passwords")
    if len(set(lowered)) < 4 or (user_name and user_name.lower() in lowered):
        raise WeakPassword("password too common: too few different characters, or contains the user name")
    if core == "" or core.isdigit():
        raise WeakPassword("password too common: digits and symbols only")
    if _repeats_short_unit(lowered) or _repeats_short_unit(core):
        raise WeakPassword("password too common: a short password repeated")
    if _is_walk(lowered):
        raise WeakPassword("password too common: a keyboard row or a sequence")


# Rows and runs people walk along: "qwertyuiop", "abcdef", "1qaz2wsx", "!@#$%".
_SEQUENCES = (
    "abcdefghijklmnopqrstuvwxyz", "0123456789", "qwertyuiopasdfghjklzxcvbnm", "qwertzuiopasdfghjklyxcvbnm",
    "azertyuiopqsdfghjklmwxcvbn", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p", "zaq1xsw2cde3vfr4bgt5nhy6mju7",
    "!@#$%^&*()_+", "1234567890-=",
)


def _repeats_short_unit(text: str) -> bool:
    """"letmeinletmein", "Passw0rd!Passw0rd!": no stronger than the shorter password repeated."""
    for size in range(1, min(len(text) // 2, MIN_LENGTH - 1) + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return True
    return False


def _is_walk(text: str) -> bool:
    """Three quarters or more of the neighbouring characters are neighbours on a row or in a run."""
    pairs = list(pairwise(text))
    if not pairs:
        return False
    steps = sum(1 for a, b in pairs if a == b or any(a + b in seq or b + a in seq for seq in _SEQUENCES))
    return steps >= 0.75 * len(pairs)


def generate_password() -> str:
    """A 20-character random password for the demo's first admin."""
    return secrets.token_urlsafe(15)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    needs_rehash: bool


class Passwords:
    def __init__(self, settings: PasswordSettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.time_cost, memory_cost=settings.memory_cost, parallelism=settings.parallelism
        )
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def prepare(self) -> None:
        """Make the dummy hash; called once at start so the first unknown-user sign-in is not faster."""
        self._dummy_hash = await self.hash(secrets.token_urlsafe(32))

    def _verify_sync(self, stored_hash: str | None, password: str) -> VerifyResult:
        target = stored_hash if stored_hash is not None else self._dummy_hash or self._hasher.hash("x" * 16)
        try:
            self._hasher.verify(target, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return VerifyResult(ok=False, needs_rehash=False)
        if stored_hash is None:  # the dummy can never let anyone in
            return VerifyResult(ok=False, needs_rehash=False)
        return VerifyResult(ok=True, needs_rehash=self._hasher.check_needs_rehash(stored_hash))

    async def verify(self, stored_hash: str | None, password: str) -> VerifyResult:
        """Verify ``password``; ``stored_hash=None`` runs the dummy verification and always fails."""
        if len(password) > MAX_LENGTH:
            stored_hash, password = None, password[:MAX_LENGTH]
        async with self._slots:
            return await asyncio.to_thread(self._verify_sync, stored_hash, password)
