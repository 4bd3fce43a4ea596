from __future__ import annotations

import pytest

from gateway.auth.cookie import SALT, SessionCookie, cookie_value
from gateway.auth.csrf import Csrf, origin_allowed

KEY = "s" * 48


def test_cookie_round_trip_and_forgery() -> None:
    codec = SessionCookie(KEY, "gateway_session", 3600)
    token = codec.dump("abc_DEF-123")
    assert codec.load(token) == "abc_DEF-123"
    assert codec.load(token) == "abc_DEF-123"  # remembered: the same answer without re-verifying
    assert SessionCookie("t" * 48, "gateway_session", 3600).load(token) is None  # other key
    for bad in ("", "garbage", token[:-2] + "xx", token + "x", "x" * 1000, "a.b.c", "\u00e9.\u00e9.\u00e9"):
        assert codec.load(bad) is None


def test_cookie_is_quart_auths_own_format() -> None:
    # The codec builds Quart-Auth's serializer from itsdangerous (no Quart import on the admission
    # path or in the CLI); a cookie either writes, the other reads, with the same key and salt.
    from quart_auth import QuartAuth

    quart_auth = QuartAuth.serializer_class(KEY, SALT)
    codec = SessionCookie(KEY, "gateway_session", 3600)
    assert codec.load(str(quart_auth.dumps("abc_DEF-123"))) == "abc_DEF-123"
    assert quart_auth.loads(codec.dump("xyz"), max_age=3600) == "xyz"
    assert SessionCookie(KEY, "gateway_session", 3600).load(str(QuartAuth.serializer_class(KEY, "x").dumps("a"))) is None


@pytest.mark.parametrize(("header", "expected"), [
    ("gateway_session=abc", "abc"),
    ("a=1; gateway_session=abc; b=2", "abc"),
    ("gateway_session=first; gateway_session=second", "first"),
    ('gateway_session="quoted"', "quoted"),
    ("xgateway_session=abc", None),
    ("", None),
    (None, None),
])
def test_cookie_value(header: str | None, expected: str | None) -> None:
    assert cookie_value(header, "gateway_session") == expected


def test_csrf() -> None:
    csrf = Csrf(KEY)
    binding = csrf.new_binding()
    token = csrf.token_for(binding)
    assert csrf.check(binding, token)
    assert not csrf.check(csrf.new_binding(), token)
    assert not csrf.check(binding, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert not csrf.check(None, token) and not csrf.check(binding, None) and not csrf.check(binding, "")
    assert not Csrf("o" * 48).check(binding, token)


@pytest.mark.parametrize(("origin", "expected", "allowed"), [
    (None, "https://gw.example", True),
    ("https://gw.example", "https://gw.example", True),
    ("https://gw.example:443", "https://gw.example", True),
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080", True),
    ("HTTP://GW.example", "http://gw.example", True),
    ("https://evil.example", "https://gw.example", False),
    ("null", "https://gw.example", False),
    ("https://gw.example.evil", "https://gw.example", False),
    ("http://gw.example", "https://gw.example", False),  # the scheme counts
    ("https://127.0.0.1:8080", "http://127.0.0.1:8080", False),
    ("https://gw.example:8443", "https://gw.example", False),
    ("https://gw.example/path", "https://gw.example", False),
    ("", "https://gw.example", False),
])
def test_origin(origin: str | None, expected: str, allowed: bool) -> None:
    assert origin_allowed(origin, expected) is allowed
