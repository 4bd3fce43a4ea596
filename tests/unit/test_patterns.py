from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.model import Access, Rule
from gateway.policy.patterns import Matcher, Pattern, PatternError, parse_pattern


def rule(pattern: str, line: int = 1) -> Rule:
    return Rule(pattern, Access.ANYONE, frozenset(), None, None, None, "test.yaml", line)


VALID = [
    ("root", "/", ("",), False),
    ("literal", "/favicon.ico", ("favicon.ico",), False),
    ("nested", "/a/b/c", ("a", "b", "c"), False),
    ("trailing-slash", "/admin/", ("admin", ""), False),
    ("everything", "/**", (), True),
    ("below", "/admin/**", ("admin",), True),
    ("star", "/a/*/c", ("a", "*", "c"), False),
    ("star-then-globstar", "/a/*/**", ("a", "*"), True),
    ("star-trailing-slash", "/*/", ("*", ""), False),
    ("unicode", "/café/日本", ("café", "日本"), False),
    ("space-and-marks", "/a b/x-y_z.~!$&'()+,=:@", ("a b", "x-y_z.~!$&'()+,=:@"), False),
    ("dots-in-name", "/a.b/...", ("a.b", "..."), False),
]


@pytest.mark.parametrize(("text", "segments", "globstar"), [c[1:] for c in VALID], ids=[c[0] for c in VALID])
def test_parse_valid(text: str, segments: tuple[str, ...], globstar: bool) -> None:
    assert parse_pattern(text) == Pattern(segments=segments, globstar=globstar)


INVALID = [
    ("empty", "", "must start with /"),
    ("relative", "admin/**", "must start with /"),
    ("globstar-middle", "/**/admin", "only allowed as the last segment"),
    ("globstar-twice", "/a/**/**", "only allowed as the last segment"),
    ("globstar-then-slash", "/admin/**/", "only allowed as the last segment"),
    ("globstar-in-name", "/a**", "whole segment"),
    ("star-in-literal", "/a*b", "whole segment"),
    ("star-extension", "/*.js", "whole segment"),
    ("dot", "/a/./b", "dot segments"),
    ("dotdot", "/a/../b", "dot segments"),
    ("dot-last", "/a/.", "dot segments"),
    ("double-slash", "//a", "empty segment"),
    ("double-slash-middle", "/a//b", "empty segment"),
    ("double-trailing-slash", "/a//", "empty segment"),
    ("empty-before-globstar", "/a//**", "empty segment"),
    ("percent", "/a%20b", "written decoded"),
    ("backslash", "/a\\b", "not allowed"),
    ("semicolon", "/a;b", "not allowed"),
    ("question", "/a?b", "not allowed"),
    ("hash", "/a#b", "not allowed"),
    ("control", "/a\nb", "control character"),
    ("nul", "/a\x00", "control character"),
    ("c1-control", "/a\x85", "control character"),
]


@pytest.mark.parametrize(("text", "reason"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_parse_invalid(text: str, reason: str) -> None:
    with pytest.raises(PatternError, match=reason):
        parse_pattern(text)


# (the more specific pattern, the less specific one): each pair is checked in both orders of insertion.
MORE_SPECIFIC = [
    ("star-beats-globstar", "/a/*/c", "/a/**", "/a/b/c"),
    ("literal-beats-star", "/a/b", "/a/*", "/a/b"),
    ("ended-beats-globstar-after-star", "/a/*", "/a/*/**", "/a/b"),
    ("more-leading-literals", "/a/b/**", "/a/*/c/d", "/a/b/c/d"),
    ("literal-beats-globstar", "/a/b", "/a/**", "/a/b"),
    ("ended-beats-globstar", "/a", "/a/**", "/a"),
    ("deeper-globstar", "/a/b/**", "/a/**", "/a/b/c"),
    ("root-literal", "/", "/**", "/"),
    ("trailing-slash-literal", "/a/", "/a/**", "/a/"),
    ("star-beats-root-globstar", "/*", "/**", "/x"),
    ("literal-then-star", "/a/*/c", "/*/b/c", "/a/b/c"),
    ("star-chain-beats-globstar", "/*/*/*", "/*/**", "/a/b/c"),
]


@pytest.mark.parametrize(("winner", "loser", "path"), [c[1:] for c in MORE_SPECIFIC], ids=[c[0] for c in MORE_SPECIFIC])
def test_most_specific_wins(winner: str, loser: str, path: str) -> None:
    assert parse_pattern(winner).matches(path) and parse_pattern(loser).matches(path)
    assert parse_pattern(winner).specificity > parse_pattern(loser).specificity
    for order in ([winner, loser], [loser, winner]):
        found = Matcher([rule(p) for p in order]).lookup(path)
        assert [r.pattern for r in found] == [winner]


MATCHES = [
    ("/**", "/", True),
    ("/**", "/a/b/", True),
    ("/admin/**", "/admin", True),
    ("/admin/**", "/admin/", True),
    ("/admin/**", "/admin/x/y", True),
    ("/admin/**", "/administrator", False),
    ("/admin/**", "/", False),
    ("/admin", "/admin/", False),
    ("/admin/", "/admin", False),
    ("/admin/", "/admin/", True),
    ("/", "/", True),
    ("/", "/a", False),
    ("/*", "/", False),
    ("/*", "/a", True),
    ("/*", "/a/", False),
    ("/*/", "/a/", True),
    ("/a/*/c", "/a/b/c", True),
    ("/a/*/c", "/a/b/d", False),
    ("/a/*/c", "/a/c", False),
    ("/a/*/**", "/a/b", True),
    ("/a/*/**", "/a", False),
    ("/a/*/**", "/a/", False),
    ("/a/b", "/A/b", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), MATCHES, ids=[f"{p} {q}" for p, q, _ in MATCHES])
def test_matches(pattern: str, path: str, expected: bool) -> None:
    assert parse_pattern(pattern).matches(path) is expected
    assert bool(Matcher([rule(pattern)]).lookup(path)) is expected


def test_lookup_returns_every_rule_of_the_winning_pattern() -> None:
    rules = [rule("/a/**", 1), rule("/a/*", 2), rule("/a/*", 3), rule("/a/b/**", 4)]
    assert [r.line for r in Matcher(rules).lookup("/a/x")] == [2, 3]
    assert [r.line for r in Matcher(rules).lookup("/a/b")] == [4]
    assert Matcher(rules).lookup("/b") == ()


def test_backtracks_from_a_dead_literal_branch() -> None:
    # "/a/b/c" exists but does not match "/a/b/x"; the star branch must still be found.
    rules = [rule("/a/b/c"), rule("/a/*/x"), rule("/**")]
    assert [r.pattern for r in Matcher(rules).lookup("/a/b/x")] == ["/a/*/x"]
    assert [r.pattern for r in Matcher(rules).lookup("/a/b/y")] == ["/**"]


CASE_FOLDED = [
    ("/Admin/**", "/admin/x", True),
    ("/admin", "/ADMIN", True),
    ("/straße", "/STRASSE", True),
    ("/Ω", "/ω", True),
    ("/admin", "/admin2", False),
]


@pytest.mark.parametrize(("pattern", "path", "expected"), CASE_FOLDED, ids=[f"{p} {q}" for p, q, _ in CASE_FOLDED])
def test_case_insensitive(pattern: str, path: str, expected: bool) -> None:
    assert bool(Matcher([rule(pattern)], case_insensitive=True).lookup(path)) is expected
    assert parse_pattern(pattern).matches(path, case_insensitive=True) is expected


def test_case_sensitive_by_default() -> None:
    assert Matcher([rule("/Admin")]).lookup("/admin") == ()


def test_key_folds_case_only_when_asked() -> None:
    assert parse_pattern("/A/*").key(True) == parse_pattern("/a/*").key(True)
    assert parse_pattern("/A/*").key(False) != parse_pattern("/a/*").key(False)


# The trie must agree with the brute-force definition: the matching pattern of highest specificity.
SEGMENTS = ["a", "b", "*"]
patterns = st.builds(
    lambda segs, glob, slash: "/" + "/".join(segs) + ("/**" if glob else "/" if slash and segs else ""),
    st.lists(st.sampled_from(SEGMENTS), max_size=4),
    st.booleans(),
    st.booleans(),
).map(lambda p: "/**" if p == "//**" else p)
paths = st.lists(st.sampled_from(["a", "b", "c"]), max_size=5).map(lambda s: "/" + "/".join(s)) | st.lists(
    st.sampled_from(["a", "b"]), min_size=1, max_size=4
).map(lambda s: "/" + "/".join(s) + "/")


@settings(max_examples=1500, deadline=None)
@given(st.lists(patterns, max_size=12, unique=True), paths)
def test_trie_agrees_with_brute_force(texts: list[str], path: str) -> None:
    matching = [t for t in texts if parse_pattern(t).matches(path)]
    found = Matcher([rule(t) for t in texts]).lookup(path)
    if not matching:
        assert found == ()
    else:
        best = max(matching, key=lambda t: parse_pattern(t).specificity)
        assert [r.pattern for r in found] == [best]
