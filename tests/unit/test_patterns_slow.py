"""The long property run for patterns: ``pytest -m slow tests/unit/test_patterns_slow.py``.

The same properties as test_patterns.py (the trie against brute force, prefixes against a regular
expression), with 20,000 fresh examples each; the default tier runs a few hundred.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_patterns import (
    check_prefix_match,
    check_trie,
    check_trie_with_prefixes,
    paths,
    patterns,
    prefix_paths,
    prefix_patterns,
)

pytestmark = pytest.mark.slow

LONG = settings(max_examples=20_000, deadline=None, derandomize=False)


@pytest.fixture(autouse=True)
def _only_when_asked(request: pytest.FixtureRequest) -> None:
    # The marker alone does not keep a plain `pytest` run short: it needs -m slow to run at all.
    if "slow" not in str(request.config.getoption("markexpr") or ""):
        pytest.skip("long property run: select it with -m slow")


@LONG
@given(st.lists(patterns, max_size=12, unique=True), paths)
def test_trie_agrees_with_brute_force(texts: list[str], path: str) -> None:
    check_trie(texts, path)


@LONG
@given(prefix_patterns, prefix_paths, st.booleans())
def test_prefix_match_agrees_with_a_regular_expression(text: str, path: str, case_insensitive: bool) -> None:
    check_prefix_match(text, path, case_insensitive)


@LONG
@given(st.lists(prefix_patterns, max_size=12), prefix_paths, st.booleans())
def test_trie_with_prefixes_agrees_with_brute_force(texts: list[str], path: str, case_insensitive: bool) -> None:
    check_trie_with_prefixes(texts, path, case_insensitive)
