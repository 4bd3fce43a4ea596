"""case_insensitive mode (IIS/Windows backends): names Windows or .NET would read as another name."""

from __future__ import annotations

import pytest

from gateway.policy import PathError, canonicalize

REJECTED = [
    (b"/adm%C4%B1n/x", "case mapping"),  # dotless i: "adm\u0131n".upper() == "ADMIN"
    (b"/%C4%B0nternal", "case mapping"),  # capital I with dot
    (b"/%E2%84%AAey", "case mapping"),  # Kelvin sign K
    (b"/%C5%BFecret", "case mapping"),  # long s
    (b"/%EF%AC%80x", "case mapping"),  # ff ligature
    (b"/admin.", "trailing dot"),
    (b"/admin./x", "trailing dot"),
    (b"/admin%20", "trailing dot or space"),
    (b"/admin..", "trailing dot"),
    (b"/ADMINI~1/x", "short-name"),
    (b"/admin::$DATA", "colon"),
    (b"/admin:x", "colon"),
]


@pytest.mark.parametrize(("target", "reason"), REJECTED, ids=[t.decode() for t, _ in REJECTED])
def test_rejected_in_case_insensitive_mode(target: bytes, reason: str) -> None:
    with pytest.raises(PathError, match=reason):
        canonicalize(target, case_insensitive=True)


@pytest.mark.parametrize("target", [b"/admin.", b"/adm%C4%B1n", b"/a:b", b"/x~1"])
def test_allowed_in_default_mode(target: bytes) -> None:
    canonicalize(target)


@pytest.mark.parametrize("target", [b"/caf%C3%A9", b"/%C3%85ngstr%C3%B6m", b"/a.b/c", b"/a/./b", b"/~user", b"/v1.2/x"])
def test_ordinary_names_pass(target: bytes) -> None:
    canonicalize(target, case_insensitive=True)


@pytest.mark.parametrize("target", [b"/admin%C2%A0/x", b"/admin%E2%80%83", b"/admin%09x"])
def test_other_trailing_whitespace_is_refused(target: bytes) -> None:
    with pytest.raises(PathError):
        canonicalize(target, case_insensitive=True)
