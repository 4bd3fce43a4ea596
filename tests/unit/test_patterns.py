from __future__ import annotations

import re

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
    ("prefix-below", "/hr*/**", ("hr*",), True),
    ("prefix-alone", "/hr*", ("hr*",), False),
    ("prefix-nested", "/db/hr.c*/x/", ("db", "hr.c*", "x", ""), False),
    ("prefix-one-char", "/a*", ("a*",), False),
    ("prefix-dot", "/.*/**", (".*",), True),
    ("prefix-unicode", "/café*", ("café*",), False),
    ("prefix-then-star", "/a*/*", ("a*", "*"), False),
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
    ("star-first", "/*x", "whole segment"),
    ("globstar-first", "/**x", "only allowed as the last segment|whole segment"),
    ("star-twice-in-prefix", "/a*b*", "whole segment"),
    ("prefix-double-star", "/a/hr**/x", "whole segment"),
    ("prefix-then-globstar-in-name", "/hr*/**x", "whole segment"),
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
    # Prefixes rank between a literal segment and *, a longer prefix above a shorter one.
    ("literal-beats-prefix", "/hr", "/hr*", "/hr"),
    ("literal-globstar-beats-prefix-globstar", "/hr/**", "/hr*/**", "/hr/x"),
    ("literal-globstar-beats-prefix-on-itself", "/hr/**", "/hr*/**", "/hr"),
    ("prefix-beats-star", "/hr*", "/*", "/hr.csv"),
    ("prefix-globstar-beats-star-globstar", "/hr*/**", "/*/**", "/hr.csv/x"),
    ("prefix-beats-globstar", "/hr*/**", "/**", "/hr"),
    ("longer-prefix-beats-shorter", "/hr.c*", "/hr*", "/hr.csv"),
    ("longer-prefix-globstar-beats-shorter", "/hr.c*/**", "/hr*/**", "/hr.csv/x"),
    ("one-more-char-is-more-specific", "/ab*", "/a*", "/abc"),
    ("prefix-ended-beats-prefix-globstar", "/hr*", "/hr*/**", "/hrx"),
    ("literal-then-prefix", "/a/b*", "/a*/bc", "/a/bc"),
    ("prefix-then-anything-beats-star", "/a*/*", "/*/b", "/ab/b"),
    ("prefix-then-literal-beats-prefix-then-star", "/hr*/x", "/hr*/*", "/hr.csv/x"),
    ("deeper-literal-below-prefix", "/hr*/x/**", "/hr*/**", "/hr.csv/x/y"),
]


@pytest.mark.parametrize(("winner", "loser", "path"), [c[1:] for c in MORE_SPECIFIC], ids=[c[0] for c in MORE_SPECIFIC])
def test_most_specific_wins(winner: str, loser: str, path: str) -> None:
    assert parse_pattern(winner).matches(path) and parse_pattern(loser).matches(path)
    assert parse_pattern(winner).specificity() > parse_pattern(loser).specificity()
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
    # The segment prefix: any whole segment starting with the characters before the *.
    ("/hr*/**", "/hr", True),
    ("/hr*/**", "/hr.csv", True),
    ("/hr*/**", "/hr.json/x", True),
    ("/hr*/**", "/hrm", True),
    ("/hr*/**", "/hr/", True),
    ("/hr*/**", "/hr/x/y", True),
    ("/hr*/**", "/h", False),
    ("/hr*/**", "/xhr", False),
    ("/hr*/**", "/x/hr", False),
    ("/hr*/**", "/HR", False),
    ("/hr*/**", "/", False),
    ("/hr*", "/hr", True),
    ("/hr*", "/hr.csv", True),
    ("/hr*", "/hr/", False),
    ("/hr*", "/hr/x", False),
    ("/hr*/", "/hrx/", True),
    ("/hr*/", "/hrx", False),
    ("/a/hr*/c", "/a/hr~1/c", True),
    ("/a/hr*/c", "/a/h/c", False),
    ("/.*/**", "/.git/config", True),
    ("/.*/**", "/x.git", False),
    ("/café*", "/cafés", True),
    ("/café*", "/cafe", False),
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
    ("/HR*/**", "/hr.csv", True),
    ("/hr*", "/HR.JSON", True),
    ("/hr*", "/xHR", False),
    ("/straße*", "/STRASSEN", True),
    ("/ß*", "/ss", True),
    ("/ss*", "/ß", True),
    ("/Ω*", "/ωμέγα", True),
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
    assert parse_pattern("/HR*/**").key(True) == parse_pattern("/hr*/**").key(True)
    assert parse_pattern("/HR*/**").key(False) != parse_pattern("/hr*/**").key(False)


def test_prefixes_rank_by_folded_length_when_case_insensitive() -> None:
    # "ß*" matches exactly what "ss*" matches once folded, so it outranks "s*" like "ss*" does.
    assert parse_pattern("/ß*").specificity(True) > parse_pattern("/s*").specificity(True)
    rules = [rule("/s*", 1), rule("/ß*", 2)]
    assert [r.line for r in Matcher(rules, case_insensitive=True).lookup("/SSX")] == [2]
    assert [r.line for r in Matcher(rules, case_insensitive=True).lookup("/sx")] == [1]


# One policy, many paths: which pattern decides (the same as DESIGN.md section 4, with prefixes).
PREFIX_POLICY = ["/**", "/*/**", "/h*/**", "/hr*/**", "/hr.c*/**", "/hr/**", "/hr", "/hr.csv", "/hr*/*/edit",
                 "/*/x"]  # fmt: skip
PREFIX_WINNERS = [
    ("/hr", "/hr"),
    ("/hr/", "/hr/**"),
    ("/hr/anything", "/hr/**"),
    ("/hr.csv", "/hr.csv"),
    ("/hr.csv/x", "/hr.c*/**"),
    ("/hr.cs", "/hr.c*/**"),
    ("/hr.json", "/hr*/**"),
    ("/hr.json/x", "/hr*/**"),
    ("/hr.json/1/edit", "/hr*/*/edit"),
    ("/hrm", "/hr*/**"),
    ("/h", "/h*/**"),
    ("/hx/x", "/h*/**"),
    ("/xhr", "/*/**"),
    ("/xhr/x", "/*/x"),
    ("/", "/**"),
]


@pytest.mark.parametrize(("path", "winner"), PREFIX_WINNERS, ids=[p for p, _ in PREFIX_WINNERS])
def test_prefix_ranking_in_one_policy(path: str, winner: str) -> None:
    for order in (PREFIX_POLICY, PREFIX_POLICY[::-1]):
        assert [r.pattern for r in Matcher([rule(p) for p in order]).lookup(path)] == [winner]


def test_backtracks_from_a_longer_prefix_to_a_shorter_one() -> None:
    # "/hr.c*/x" is the most specific start for "/hr.csv/y" but ends in a dead branch.
    rules = [rule("/hr.c*/x"), rule("/hr*/y"), rule("/h*/**")]
    assert [r.pattern for r in Matcher(rules).lookup("/hr.csv/y")] == ["/hr*/y"]
    assert [r.pattern for r in Matcher(rules).lookup("/hr.csv/z")] == ["/h*/**"]


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


# The default tier's example count; test_patterns_slow.py (-m slow) runs these properties with 20,000 each.
EXAMPLES = settings(max_examples=300, deadline=None)


@EXAMPLES
@given(st.lists(patterns, max_size=12, unique=True), paths)
def test_trie_agrees_with_brute_force(texts: list[str], path: str) -> None:
    check_trie(texts, path)


def check_trie(texts: list[str], path: str) -> None:
    matching = [t for t in texts if parse_pattern(t).matches(path)]
    found = Matcher([rule(t) for t in texts]).lookup(path)
    if not matching:
        assert found == ()
    else:
        best = max(matching, key=lambda t: parse_pattern(t).specificity())
        assert [r.pattern for r in found] == [best]


# Prefixes: the pure matcher against a reference written another way (a regular expression per
# pattern, read straight from DESIGN.md), over names chosen so every prefix has hits and near misses.
PREFIX_SEGMENTS = ["a", "ab", "*", "a*", "ab*", "b*", "A*"]
PREFIX_NAMES = ["a", "ab", "abc", "b", "ba", "c", "A", "AB"]
prefix_patterns = st.builds(
    lambda segs, glob, slash: "/" + "/".join(segs) + ("/**" if glob else "/" if slash and segs else ""),
    st.lists(st.sampled_from(PREFIX_SEGMENTS), max_size=3),
    st.booleans(),
    st.booleans(),
).map(lambda p: "/**" if p == "//**" else p)
prefix_paths = st.builds(
    lambda names, slash: "/" + "/".join(names) + ("/" if slash and names else ""),
    st.lists(st.sampled_from(PREFIX_NAMES), max_size=4),
    st.booleans(),
)


def reference_match(text: str, path: str, case_insensitive: bool) -> bool:
    if case_insensitive:
        text, path = text.casefold(), path.casefold()
    globstar = text.endswith("/**")
    body = text[: -len("/**")] if globstar else text
    parts = []
    for segment in body.split("/")[1:] if body else []:
        if segment == "*":
            parts.append("[^/]+")
        elif segment.endswith("*"):
            parts.append(re.escape(segment[:-1]) + "[^/]*")
        else:
            parts.append(re.escape(segment))
    regex = "/" + "/".join(parts) if parts or not globstar else ""
    if globstar:
        regex += "(/.*)?"
    return re.fullmatch(regex, path) is not None


@EXAMPLES
@given(prefix_patterns, prefix_paths, st.booleans())
def test_prefix_match_agrees_with_a_regular_expression(text: str, path: str, case_insensitive: bool) -> None:
    check_prefix_match(text, path, case_insensitive)


def check_prefix_match(text: str, path: str, case_insensitive: bool) -> None:
    expected = reference_match(text, path, case_insensitive)
    assert parse_pattern(text).matches(path, case_insensitive=case_insensitive) is expected
    assert bool(Matcher([rule(text)], case_insensitive=case_insensitive).lookup(path)) is expected


@EXAMPLES
@given(st.lists(prefix_patterns, max_size=12), prefix_paths, st.booleans())
def test_trie_with_prefixes_agrees_with_brute_force(texts: list[str], path: str, case_insensitive: bool) -> None:
    check_trie_with_prefixes(texts, path, case_insensitive)


def check_trie_with_prefixes(texts: list[str], path: str, case_insensitive: bool) -> None:
    # One rule per distinct pattern, as the loader's conflict check guarantees.
    unique = list({parse_pattern(t).key(case_insensitive): t for t in texts}.values())
    matching = [t for t in unique if reference_match(t, path, case_insensitive)]
    found = Matcher([rule(t) for t in unique], case_insensitive=case_insensitive).lookup(path)
    if not matching:
        assert found == ()
    else:
        best = max(matching, key=lambda t: parse_pattern(t).specificity(case_insensitive))
        assert [r.pattern for r in found] == [best]
