from __future__ import annotations

import pytest

from gateway.http.redirects import safe_next

CASES = [
    ("/", "/"),
    ("/a/b?x=1&y=%2F", "/a/b?x=1&y=%2F"),
    ("/reports/q1?year=2026", "/reports/q1?year=2026"),
    (None, "/"),
    ("", "/"),
    ("//evil.example", "/"),
    ("///evil.example", "/"),
    ("/\\evil.example", "/"),
    ("\\\\evil.example", "/"),
    ("/a\\b", "/"),
    ("http://evil.example/", "/"),
    ("https:evil.example", "/"),
    ("javascript:alert(1)", "/"),
    ("evil.example", "/"),
    ("/\t/evil.example", "/"),
    ("/\n/evil.example", "/"),
    ("/ /evil", "/"),
    ("/caf\u00e9", "/"),
    ("/x#frag", "/"),
    ("/.gateway/login", "/"),
    ("/.gateway/login?next=/x", "/"),
    ("/.gateway/logout", "/"),
    ("/.gateway/whoami", "/.gateway/whoami"),
    ("/" + "a" * 3000, "/"),
    ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),  # a path on this host, not a host
]


@pytest.mark.parametrize(("value", "expected"), CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_safe_next(value: str | None, expected: str) -> None:
    assert safe_next(value) == expected
