"""TOTP (gateway/auth/totp.py) against RFC 6238's test vectors and, when installed, pyotp."""

from __future__ import annotations

import importlib.util
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.auth import totp

# RFC 6238 appendix B: SHA-1 key "12345678901234567890", 8-digit codes; the last 6 digits are the
# 6-digit code (truncation takes the value modulo 10**digits).
RFC_SECRET = b"12345678901234567890"
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


@pytest.mark.parametrize(("now", "code8"), RFC_VECTORS)
def test_rfc6238_vectors(now: int, code8: str) -> None:
    assert totp.code_at(RFC_SECRET, totp.step_of(now)) == code8[-6:]


def test_match_accepts_one_step_either_side_and_no_more() -> None:
    now = 1234567890.0
    step = totp.step_of(now)
    for delta in (-1, 0, 1):
        assert totp.match(RFC_SECRET, totp.code_at(RFC_SECRET, step + delta), now) == step + delta
    for delta in (-2, 2):
        assert totp.match(RFC_SECRET, totp.code_at(RFC_SECRET, step + delta), now) is None


def test_match_forgives_spaces_and_refuses_non_codes() -> None:
    now = 1111111111.0
    code = totp.code_at(RFC_SECRET, totp.step_of(now))
    assert totp.match(RFC_SECRET, f" {code[:3]} {code[3:]} ", now) == totp.step_of(now)
    for bad in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 34 5"):
        assert totp.match(RFC_SECRET, bad, now) is None


def test_secret_round_trips_through_text() -> None:
    secret = totp.new_secret()
    assert len(secret) == 20
    text = totp.encode_secret(secret)
    assert "=" not in text
    assert totp.decode_secret(text) == secret
    spaced = " ".join(text[i:i + 4] for i in range(0, len(text), 4)).lower()
    assert totp.decode_secret(spaced) == secret
    with pytest.raises(ValueError):
        totp.decode_secret("not base32 1!")
    with pytest.raises(ValueError):
        totp.decode_secret("  ")


def test_provisioning_uri_carries_issuer_account_and_key() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "alice@example.com", "Acme Gateway")
    parts = urlsplit(uri)
    assert parts.scheme == "otpauth" and parts.netloc == "totp"
    assert unquote(parts.path) == "/Acme Gateway:alice@example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [totp.encode_secret(secret)]
    assert query["issuer"] == ["Acme Gateway"]
    assert query["digits"] == ["6"] and query["period"] == ["30"] and query["algorithm"] == ["SHA1"]


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=2**40))
def test_codes_are_six_digits(secret: bytes, step: int) -> None:
    code = totp.code_at(secret, step)
    assert len(code) == 6 and code.isdigit()


needs_pyotp = pytest.mark.skipif(importlib.util.find_spec("pyotp") is None, reason="pyotp not installed")


@needs_pyotp
@given(st.integers(min_value=0, max_value=2**33))
def test_agrees_with_pyotp(now: int) -> None:
    import pyotp

    secret = totp.new_secret()
    reference = pyotp.TOTP(totp.encode_secret(secret))
    assert totp.code_at(secret, totp.step_of(now)) == reference.at(now)
    assert totp.match(secret, reference.at(now), now) == totp.step_of(now)


@needs_pyotp
def test_pyotp_reads_the_provisioning_uri() -> None:
    import pyotp

    secret = totp.new_secret()
    parsed = pyotp.parse_uri(totp.provisioning_uri(secret, "bob", "Gateway"))
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.issuer == "Gateway" and parsed.name == "bob"
    assert parsed.at(1700000000) == totp.code_at(secret, totp.step_of(1700000000))
