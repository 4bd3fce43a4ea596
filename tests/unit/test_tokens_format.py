"""Personal access tokens as text (auth/tokens.py): shape, checksum, digest."""

from __future__ import annotations

import re
import secrets

from hypothesis import given
from hypothesis import strategies as st

from gateway.auth.tokens import PREFIX, TOKEN_LENGTH, digest_key, make_token, token_digest, well_formed

SHAPE = re.compile(r"gw_[0-9A-Za-z]{49}")
ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def test_a_new_token_has_the_documented_shape_and_is_never_repeated() -> None:
    tokens = {make_token() for _ in range(2000)}
    assert len(tokens) == 2000
    for token in tokens:
        assert SHAPE.fullmatch(token) and len(token) == TOKEN_LENGTH and well_formed(token)


@given(position=st.integers(min_value=len(PREFIX), max_value=TOKEN_LENGTH - 1), replacement=st.sampled_from(ALPHABET))
def test_any_single_character_typo_is_caught_without_a_store(position: int, replacement: str) -> None:
    token = make_token()
    typo = token[:position] + replacement + token[position + 1:]
    assert well_formed(typo) == (typo == token)  # CRC32 catches every single-character change


@given(st.text(max_size=80))
def test_arbitrary_text_is_not_a_token(text: str) -> None:
    assert not well_formed(text) or SHAPE.fullmatch(text)


def test_wrong_prefix_length_or_characters_are_refused() -> None:
    token = make_token()
    for bad in ("gh_" + token[3:], token[:-1], token + "A", token[:10] + "-" + token[11:], "", PREFIX):
        assert not well_formed(bad)


def test_the_digest_is_keyed_by_the_server_secret() -> None:
    token = make_token()
    one, two = digest_key(secrets.token_urlsafe(48)), digest_key(secrets.token_urlsafe(48))
    assert token_digest(token, one) == token_digest(token, one)
    assert token_digest(token, one) != token_digest(token, two)
    assert re.fullmatch(r"[0-9a-f]{64}", token_digest(token, one))
    assert token not in token_digest(token, one)
