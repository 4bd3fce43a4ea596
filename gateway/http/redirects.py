"""Where a sign-in may send the browser back to: only a path on this gateway."""

from __future__ import annotations

from urllib.parse import quote, urlsplit

DEFAULT_NEXT = "/"
MAX_NEXT_LENGTH = 2048
LOGIN = "/.gateway/login"
LOGOUT = "/.gateway/logout"


def sign_in_url(next_path: str) -> str:
    """The sign-in page, set to go on to ``next_path`` (decided afresh when the browser comes back)."""
    return f"{LOGIN}?next={quote(next_path, safe='')}"


def switch_user_url(next_path: str) -> str:
    """The sign-out page, set to sign in as someone else and come back to ``next_path``."""
    return f"{LOGOUT}?next={quote(next_path, safe='')}"


def safe_next(value: str | None) -> str:
    """``value`` when it is a safe local path (with optional query), else "/".

    Refused: absolute and scheme-relative URLs (``//evil``), backslashes (browsers read ``/\\evil``
    as ``//evil``), anything with whitespace or control characters (browsers strip tabs and
    newlines, turning ``/\t/evil`` into ``//evil``), non-ASCII, and the sign-in/sign-out pages.
    """
    if not value or len(value) > MAX_NEXT_LENGTH or not value.startswith("/"):
        return DEFAULT_NEXT
    if value.startswith("//") or "\\" in value or not value.isascii():
        return DEFAULT_NEXT
    if any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in value):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.fragment:
        return DEFAULT_NEXT
    if parts.path.rstrip("/") in {LOGIN, LOGOUT}:
        return DEFAULT_NEXT
    return value
