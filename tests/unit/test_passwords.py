from __future__ import annotations

import pytest

from gateway.auth.passwords import Passwords, WeakPassword, check_strength
from gateway.config import PasswordSettings

FAST = PasswordSettings(time_cost=1, memory_cost=8192, parallelism=1, max_concurrent=2)


@pytest.mark.parametrize("password", [
    "correct horse battery staple", "Tr0ub4dor&3-extended", "ünïcødé pässwörd ✓", "  spaces around  ",
    "日本語のパスワードです十二文字", ("long passphrase " * 64)[:1024],
])
def test_accepted(password: str) -> None:
    check_strength(password, "alice")


@pytest.mark.parametrize(("password", "reason"), [
    ("short1!", "too short"), ("elevenchars", "too short"), ("x" * 1025, "too long"),
    ("password1234", "too common"), ("Password2024!", "too common"), ("qwerty123456", "too common"),
    ("123456789012", "too common"), ("aaaaaaaaaaaa", "too common"), ("abababababab", "too common"),
    ("alice-is-great-1", "too common"), ("!!!!@@@@####$$$$", "too common"),
    ("passwordpassword", "too common"), ("iloveyouiloveyou", "too common"), ("letmeinletmein", "too common"),
    ("dragondragon", "too common"), ("welcomewelcome", "too common"), ("monkeymonkey1", "too common"),
    ("trustno1trustno1", "too common"), ("qwertyqwertyqwerty", "too common"), ("qwertyuiopasdf", "too common"),
    ("abcdefghijklmnop", "too common"), ("Passw0rd!Passw0rd!", "too common"), ("1qaz2wsx3edc4rfv", "too common"),
    ("zyxwvutsrqponm", "too common"), ("asdfghjkl;'12", "too common"),
])
def test_refused(password: str, reason: str) -> None:
    with pytest.raises(WeakPassword, match=reason):
        check_strength(password, "alice")


async def test_hash_verify_and_rehash() -> None:
    passwords = Passwords(FAST)
    await passwords.prepare()
    stored = await passwords.hash("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    ok = await passwords.verify(stored, "correct horse battery staple")
    assert ok.ok and not ok.needs_rehash
    assert not (await passwords.verify(stored, "correct horse battery stapl")).ok
    # Exactly as typed: no trimming, no normalisation.
    assert not (await passwords.verify(stored, "correct horse battery staple ")).ok
    assert not (await passwords.verify(None, "anything at all")).ok  # the dummy never matches
    stronger = Passwords(PasswordSettings(time_cost=2, memory_cost=8192, parallelism=1, max_concurrent=1))
    assert (await stronger.verify(stored, "correct horse battery staple")).needs_rehash


async def test_unicode_forms_are_distinct() -> None:
    passwords = Passwords(FAST)
    composed, decomposed = "caf\u00e9 au lait pour moi", "cafe\u0301 au lait pour moi"
    stored = await passwords.hash(composed)
    assert (await passwords.verify(stored, composed)).ok
    assert not (await passwords.verify(stored, decomposed)).ok


async def test_over_long_input_is_rejected_without_error() -> None:
    passwords = Passwords(FAST)
    stored = await passwords.hash("correct horse battery staple")
    assert not (await passwords.verify(stored, "x" * 100_000)).ok
