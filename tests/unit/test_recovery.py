"""Recovery codes (gateway/auth/recovery.py): shape, uniqueness, keyed digests."""

from __future__ import annotations

import re

from gateway.auth import recovery

SECRET = b"s" * 32


def test_a_set_is_ten_distinct_readable_codes() -> None:
    codes = recovery.new_codes()
    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", code)
        assert not set(code) & set("01oil")


def test_digest_is_keyed_and_forgives_typing() -> None:
    code = recovery.new_codes(1)[0]
    stored = recovery.digest(SECRET, code)
    assert stored is not None and len(stored) == 64
    assert recovery.digest(SECRET, code.upper().replace("-", " ")) == stored
    assert recovery.digest(b"t" * 32, code) != stored  # another server secret, another digest
    assert code.replace("-", "") not in stored


def test_non_codes_have_no_digest() -> None:
    for bad in ("", "abcd-efgh", "abcd-efgh-jkm0", "abcd-efgh-jkmnp", "ABCD-EFGH-IJKL"):
        assert recovery.digest(SECRET, bad) is None
