from __future__ import annotations

from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.paths import CanonicalPath, PathError, canonicalize

# (raw target, decision, forward) for targets accepted in the default (no parameters) mode.
ACCEPTED = [
    ("root", "/", "/", "/"),
    ("plain", "/a/b", "/a/b", "/a/b"),
    ("dotdot", "/a/../b", "/b", "/b"),
    ("encoded-dotdot", "/a/%2e%2e/b", "/b", "/b"),
    ("mixed-case-dotdot", "/a/%2E%2e/b", "/b", "/b"),
    ("half-encoded-dotdot", "/a/.%2e/b", "/b", "/b"),
    ("encoded-dot", "/a/%2E/b", "/a/b", "/a/b"),
    ("dot", "/a/./b", "/a/b", "/a/b"),
    ("merged-slashes", "//a///b/", "/a/b/", "/a/b/"),
    ("only-slashes", "///", "/", "/"),
    ("trailing-slash", "/a/", "/a/", "/a/"),
    ("trailing-dot", "/a/b/.", "/a/b/", "/a/b/"),
    ("trailing-dotdot", "/a/b/..", "/a/", "/a/"),
    ("dotdot-to-root", "/a/..", "/", "/"),
    ("dot-at-root", "/.", "/", "/"),
    ("dot-then-dotdot", "/a/./../b/", "/b/", "/b/"),
    ("dots-in-name", "/a.b/..c/c../...", "/a.b/..c/c../...", "/a.b/..c/c../..."),
    ("utf8-encoded", "/caf%C3%A9", "/café", "/caf%C3%A9"),
    ("utf8-lowercase-hex", "/caf%c3%a9", "/café", "/caf%C3%A9"),
    ("utf8-raw", "/café", "/café", "/caf%C3%A9"),
    ("cjk", "/%E6%97%A5%E6%9C%AC", "/日本", "/%E6%97%A5%E6%9C%AC"),
    ("percent-literal", "/100%25", "/100%", "/100%25"),
    ("percent-then-one-hex", "/%25a", "/%a", "/%25a"),
    ("percent-then-non-hex", "/%25zz", "/%zz", "/%25zz"),
    ("tilde", "/%7e", "/~", "/~"),
    ("unreserved-decoded", "/%41%2D%5F", "/A-_", "/A-_"),
    ("space", "/a%20b", "/a b", "/a%20b"),
    ("sub-delims-kept", "/a!$&'()*+,=:@~b", "/a!$&'()*+,=:@~b", "/a!$&'()*+,=:@~b"),
    ("encoded-sub-delim", "/a%2Bb", "/a+b", "/a+b"),
    ("encoded-question", "/a%3Fb", "/a?b", "/a%3Fb"),
    ("encoded-hash", "/a%23b", "/a#b", "/a%23b"),
    ("quote-and-brackets", '/a"[]{}|^`<>', '/a"[]{}|^`<>', "/a%22%5B%5D%7B%7D%7C%5E%60%3C%3E"),
    ("star-segment", "/*", "/*", "/*"),
    ("case-kept", "/Admin/X", "/Admin/X", "/Admin/X"),
    ("fullwidth-letters", "/%EF%BC%A1", "/Ａ", "/%EF%BC%A1"),  # NFKC gives "A": no separator, harmless
]


@pytest.mark.parametrize(("raw", "decision", "forward"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted(raw: str, decision: str, forward: str) -> None:
    assert canonicalize(raw.encode()) == CanonicalPath(decision=decision, forward=forward)


REJECTED = [
    ("empty", b"", "must start with /"),
    ("relative", b"a/b", "must start with /"),
    ("asterisk-form", b"*", "must start with /"),
    ("absolute-form", b"http://h/a", "must start with /"),
    ("climb-root", b"/..", "climbs above the root"),
    ("climb-later", b"/a/../../b", "climbs above the root"),
    ("climb-encoded", b"/%2e%2e/a", "climbs above the root"),
    ("climb-after-dot", b"/./..", "climbs above the root"),
    ("encoded-slash", b"/%2F", "encoded slash"),
    ("encoded-slash-lower", b"/a%2fb", "encoded slash"),
    ("encoded-backslash", b"/a%5cb", "encoded backslash"),
    ("raw-backslash", b"/a\\b", "backslash"),
    ("double-dotdot", b"/%252e%252e/", "double percent-encoding"),
    ("double-slash", b"/a%252fb", "double percent-encoding"),
    ("double-backslash", b"/a%255cb", "double percent-encoding"),
    ("double-letter", b"/%256d", "double percent-encoding"),
    ("double-split", b"/%25%32%65", "double percent-encoding"),
    ("double-raw-digits", b"/%2541", "double percent-encoding"),
    ("nul", b"/%00", "encoded control character"),
    ("newline", b"/%0a", "encoded control character"),
    ("del", b"/%7F", "encoded control character"),
    ("c1-control", b"/%C2%85", "encoded control character"),
    ("raw-nul", b"/a\x00", "control character"),
    ("raw-newline", b"/a\nb", "control character"),
    ("raw-tab", b"/a\tb", "control character"),
    ("raw-del", b"/a\x7f", "control character"),
    ("raw-space", b"/a b", "space"),
    ("overlong-dot", b"/%c0%ae", "invalid UTF-8"),
    ("overlong-slash", b"/%c0%af", "invalid UTF-8"),
    ("overlong-3byte", b"/%e0%80%ae", "invalid UTF-8"),
    ("lone-ff", b"/%ff", "invalid UTF-8"),
    ("truncated-utf8", b"/%c3", "invalid UTF-8"),
    ("surrogate", b"/%ed%a0%80", "invalid UTF-8"),
    ("raw-invalid-utf8", b"/\xff", "invalid UTF-8"),
    ("raw-overlong", b"/\xc0\xae", "invalid UTF-8"),
    ("percent-alone", b"/a%", "malformed percent-encoding"),
    ("percent-one-hex", b"/a%2", "malformed percent-encoding"),
    ("percent-non-hex", b"/a%zz", "malformed percent-encoding"),
    ("iis-unicode", b"/%u002e%u002e/admin", "malformed percent-encoding"),
    ("fragment", b"/a#b", "fragment"),
    ("query", b"/a?b", "query"),
    ("params-raw", b"/admin;x=y", "path parameters not allowed"),
    ("params-encoded", b"/%3B/admin", "path parameters not allowed"),
    ("params-encoded-lower", b"/a%3bb", "path parameters not allowed"),
    ("params-dotdot", b"/a/..;/admin", "path parameters not allowed"),
    ("fullwidth-dotdot", b"/%EF%BC%8E%EF%BC%8E/admin", "look-alike"),
    ("fullwidth-dot-in-name", b"/a%EF%BC%8Eb", "look-alike"),
    ("fullwidth-slash", b"/a%EF%BC%8Fb", "look-alike"),
    ("fullwidth-backslash", b"/a%EF%BC%BCb", "look-alike"),
    ("fullwidth-semicolon", b"/a%EF%BC%9Bb", "look-alike"),
    ("fullwidth-percent", b"/%EF%BC%85%EF%BC%92%EF%BD%85", "look-alike"),
    ("one-dot-leader", b"/%E2%80%A4", "look-alike"),
    ("two-dot-leader", b"/%E2%80%A5", "look-alike"),
    ("raw-fullwidth-dotdot", "/．．/admin".encode(), "look-alike"),
]


@pytest.mark.parametrize(("raw", "reason"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected(raw: bytes, reason: str) -> None:
    with pytest.raises(PathError, match=reason):
        canonicalize(raw)


# Targets accepted only when path parameters are allowed.
WITH_PARAMS = [
    ("dotdot-params", "/x/..;/admin", "/admin", "/admin"),
    ("dotdot-params-value", "/x/..;y=1/admin", "/admin", "/admin"),
    ("encoded-semicolon-empty", "/%3B/admin", "/admin", "/admin"),
    ("empty-name-params", "/;x/admin", "/admin", "/admin"),
    ("jsessionid", "/app;jsessionid=ABC/x", "/app/x", "/app;jsessionid=ABC/x"),
    ("params-last", "/admin;x=y", "/admin", "/admin;x=y"),
    ("params-trailing-slash", "/a;p/", "/a/", "/a;p/"),
    ("empty-params", "/a;", "/a", "/a;"),
    ("first-semicolon-splits", "/a;b;c", "/a", "/a;b;c"),
    ("encoded-semicolon-splits", "/a%3Bb%3Bc", "/a", "/a;b;c"),
    ("params-encoded", "/a;x%20y", "/a", "/a;x%20y"),
    ("dot-params", "/a/.;x/b", "/a/b", "/a/b"),
    ("dotdot-params-last", "/a/b/..;x", "/a/", "/a/"),
    ("popped-params-dropped", "/a;x/../b", "/b", "/b"),
]


@pytest.mark.parametrize(("raw", "decision", "forward"), [c[1:] for c in WITH_PARAMS], ids=[c[0] for c in WITH_PARAMS])
def test_params_allowed(raw: str, decision: str, forward: str) -> None:
    assert canonicalize(raw.encode(), allow_params=True) == CanonicalPath(decision=decision, forward=forward)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"/..;/admin", "climbs above the root"),  # Tomcat would also refuse it; nothing to resolve against
        (b"/a;%2F", "encoded slash"),
        (b"/a;%252e", "double percent-encoding"),
        (b"/a;b%00", "encoded control character"),
    ],
    ids=["dotdot-params-at-root", "slash-in-params", "double-in-params", "nul-in-params"],
)
def test_params_allowed_still_rejected(raw: bytes, reason: str) -> None:
    with pytest.raises(PathError, match=reason):
        canonicalize(raw, allow_params=True)


def test_path_error_is_value_error() -> None:
    assert issubclass(PathError, ValueError)


# ---- properties -------------------------------------------------------------------------------------------

TOKENS = [
    "/", "/", "/", ".", "..", "%2e", "%2E", "%2f", "%5c", "%25", "%3b", "%3B", ";", "a", "b", "A", "é",
    "%c3%a9", "%00", "%41", "//", "\\", "x=1", "%20", "%", "2e", "%e2%80%a4", "%ef%bc%8e", "~",
]  # fmt: skip
targets = st.lists(st.sampled_from(TOKENS), max_size=14).map(lambda parts: "/" + "".join(parts))


def lenient_upstream(target: str, decodes: int) -> str:
    """How a forgiving backend might read a path: decode, '\\' as '/', drop ';params', merge, resolve dots."""
    for _ in range(decodes):
        target = unquote(target)
    segments = target.replace("\\", "/").split("/")[1:]
    names = [segment.split(";", 1)[0] for segment in segments]
    stack: list[str] = []
    for name in names:
        if name == "..":
            if stack:
                stack.pop()
        elif name not in ("", "."):
            stack.append(name)
    trailing = "/" if stack and names and names[-1] in ("", ".", "..") else ""
    return "/" + "/".join(stack) + trailing


def _check_properties(target: str, allow_params: bool) -> None:
    try:
        result = canonicalize(target.encode(), allow_params=allow_params)
    except PathError:
        return
    assert result.decision.startswith("/")
    assert result.forward.isascii()
    assert "//" not in result.decision
    assert not {"", ".", ".."} & set(result.decision.split("/")[1:-1])
    # A fixed point: forwarding the forward form through another canonicalisation changes nothing.
    assert canonicalize(result.forward.encode(), allow_params=allow_params) == result
    # Whatever a lenient backend does with what we forward (or with what the client sent) lands on
    # the path we decided on.
    for decodes in (1, 2):
        assert lenient_upstream(result.forward, decodes).casefold() == result.decision.casefold()
    assert lenient_upstream(target, 1).casefold() == result.decision.casefold()


# The default tier's example count; test_paths_slow.py (-m slow) runs the same properties with 100,000.
EXAMPLES = settings(max_examples=500, deadline=None)


@EXAMPLES
@given(targets)
def test_properties_default(target: str) -> None:
    _check_properties(target, allow_params=False)


@EXAMPLES
@given(targets)
def test_properties_with_params(target: str) -> None:
    _check_properties(target, allow_params=True)


@pytest.mark.parametrize(
    ("target", "decodes", "expected"),
    [
        ("/a/%2e%2e/b", 1, "/b"),
        ("/a%252e", 2, "/a."),
        ("/a\\..\\b", 0, "/b"),
        ("/a;x/b;y/", 0, "/a/b/"),
        ("/..//a/.", 0, "/a/"),
    ],
    ids=["decode", "decode-twice", "backslash", "params", "merge-and-clamp"],
)
def test_lenient_upstream_model(target: str, decodes: int, expected: str) -> None:
    assert lenient_upstream(target, decodes) == expected
