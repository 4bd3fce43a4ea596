from __future__ import annotations

import base64
import string
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.tokens import (
    MAX_LIFETIME,
    TOKEN_LENGTH,
    TokenDigester,
    lifetime_problem,
    new_token,
    parse_token,
    token_from_authorization,
)

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def test_format() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert token.startswith("gw_") and len(token) == TOKEN_LENGTH == 52
        assert set(token[3:]) <= set(BASE62)
        assert parse_token(token) == token


@given(st.data())
def test_any_single_typo_is_caught(data: st.DataObject) -> None:
    token = new_token()
    at = data.draw(st.integers(3, TOKEN_LENGTH - 1))
    other = data.draw(st.sampled_from(BASE62).filter(lambda c: c != token[at]))
    assert parse_token(token[:at] + other + token[at + 1:]) is None


@given(st.data())
def test_swapped_neighbours_and_truncation_are_caught(data: st.DataObject) -> None:
    token = new_token()
    at = data.draw(st.integers(3, TOKEN_LENGTH - 2))
    swapped = token[:at] + token[at + 1] + token[at] + token[at + 2:]
    assert swapped == token or parse_token(swapped) is None
    cut = data.draw(st.integers(0, TOKEN_LENGTH - 1))
    assert parse_token(token[:cut]) is None
    assert parse_token(token + "0") is None


@given(st.text(max_size=80))
def test_random_text_is_refused(text: str) -> None:
    assert parse_token(text) is None or text.startswith("gw_")


def test_wrong_prefix_and_alphabet() -> None:
    token = new_token()
    assert parse_token("gx_" + token[3:]) is None
    assert parse_token(token[:10] + "-" + token[11:]) is None


def test_digest_is_keyed_and_stable() -> None:
    token = new_token()
    one, two = TokenDigester("k" * 48), TokenDigester("j" * 48)
    assert one.digest(token) == one.digest(token)
    assert one.digest(token) != two.digest(token)
    assert token not in one.digest(token)
    assert one.matches(token, one.digest(token)) and not one.matches(token, two.digest(token))
    assert len(TokenDigester.short_id(one.digest(token))) == 12


def test_authorization_header() -> None:
    token = new_token()
    assert token_from_authorization(f"Bearer {token}") == token
    assert token_from_authorization(f"bearer  {token} ") == token
    basic = base64.b64encode(f"anyone:{token}".encode()).decode()
    assert token_from_authorization(f"Basic {basic}") == token
    # Anything else passes to the app untouched.
    assert token_from_authorization("Bearer eyJhbGciOi.x.y") is None
    assert token_from_authorization("Basic " + base64.b64encode(b"alice:secret").decode()) is None
    assert token_from_authorization("Basic !!!") is None
    assert token_from_authorization(None) is None
    assert token_from_authorization("Digest x") is None


def test_lifetime() -> None:
    assert lifetime_problem(None) is not None
    assert lifetime_problem(timedelta(0)) is not None
    assert lifetime_problem(MAX_LIFETIME + timedelta(seconds=1)) is not None
    assert lifetime_problem(MAX_LIFETIME) is None
    assert lifetime_problem(timedelta(days=90)) is None
