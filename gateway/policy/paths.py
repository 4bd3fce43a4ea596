"""One canonical path per request target (DESIGN.md section 5).

The policy decides on ``CanonicalPath.decision`` and the proxy forwards ``CanonicalPath.forward``. Both come
from the same parse, so the upstream can never see a path the policy did not decide on. Anything a lenient
backend could read differently (encoded separators, double encoding, bad UTF-8, look-alike dots) is
rejected rather than guessed at.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote, unquote_to_bytes

# Characters left raw in the forwarded path: RFC 3986 sub-delims and ':' '@', minus ';' (the parameter
# separator, which some backends strip) plus the unreserved marks that quote() always keeps.
_SAFE = "!$&'()*+,=:@~-._"
_SAFE_PARAMS = _SAFE + ";"

_BAD_RAW = re.compile(rb"[^\x21-\x7e\x80-\xff]|[\\#?]")
_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_BAD_DECODED = re.compile(rb"[\x00-\x1f\x7f/\\]")
_DOUBLE_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
# What an NFKC or "best fit" backend could turn a look-alike into.
_LOOKALIKE_TARGETS = "/\\;%."
_DOT_SEGMENTS = frozenset({".", ".."})


class PathError(ValueError):
    """The request path is malformed or ambiguous; the message is a short human reason."""


@dataclass(frozen=True, slots=True)
class CanonicalPath:
    decision: str  # decoded, starts with "/", parameters removed: what the policy decides on
    forward: str  # ASCII, percent-encoded: sent upstream verbatim


def origin_form(target: bytes) -> bytes:
    """The path of a request target: ``http://host/a`` (absolute-form) -> ``/a``; others unchanged.

    The gateway decides and forwards an absolute-form target by its path (DESIGN.md section 5).
    """
    if target[:8].lower().startswith((b"http://", b"https://")):
        authority_and_path = target.split(b"://", 1)[1]
        slash = authority_and_path.find(b"/")
        return authority_and_path[slash:] if slash >= 0 else b"/"
    return target


def canonicalize(raw_path: bytes, *, allow_params: bool = False, case_insensitive: bool = False) -> CanonicalPath:
    """Return the canonical form of ``raw_path`` (no query string) or raise PathError.

    ``case_insensitive`` is the mode for backends that ignore case, which in practice means IIS on
    Windows: there, names that Windows or an upper-casing comparison would read as another name
    are refused too (see ``_check_windows_name``).
    """
    if not raw_path.startswith(b"/"):
        raise PathError("path must start with /")
    bad = _BAD_RAW.search(raw_path)
    if bad is not None:
        raise PathError(_raw_reason(bad.group()))

    raw_segments = raw_path[1:].split(b"/")
    stack: list[tuple[str, str | None]] = []
    name = ""
    for raw in raw_segments:
        text = _decode_segment(raw)
        params: str | None = None
        if ";" in text:
            if not allow_params:
                raise PathError("path parameters not allowed")
            # Backends (Tomcat, Jetty) cut the parameters at the first ';' of each segment.
            name, params = text.split(";", 1)
        else:
            name = text
        if name == "" or name == ".":
            continue  # merged slash or no-op segment; its parameters go with it
        if name == "..":
            if not stack:
                raise PathError("path climbs above the root")
            stack.pop()
            continue
        if case_insensitive:
            _check_windows_name(name)
        stack.append((name, params))

    # RFC 3986 5.2.4: a path ending in "/", "/." or "/.." keeps its trailing slash.
    trailing = "/" if stack and name in ("", ".", "..") else ""
    decision = "/" + "/".join(n for n, _ in stack) + trailing
    forward = "/" + "/".join(_encode_segment(n, p) for n, p in stack) + trailing
    return CanonicalPath(decision=decision, forward=forward)


def _raw_reason(byte: bytes) -> str:
    if byte == b"\\":
        return "backslash in path"
    if byte == b"#":
        return "fragment marker (#) in path"
    if byte == b"?":
        return "query marker (?) in path"
    if byte == b" ":
        return "space in path"
    return "control character in path"


def _decode_segment(raw: bytes) -> str:
    """Percent-decode one segment to text, rejecting every ambiguous form."""
    data = raw
    if b"%" in raw:
        # Also rejects IIS-style %uXXXX, which only some servers decode.
        if _BAD_PERCENT.search(raw):
            raise PathError("malformed percent-encoding in path")
        data = unquote_to_bytes(raw)
        bad = _BAD_DECODED.search(data)
        if bad is not None:
            # The raw bytes were checked already, so these can only come from an escape.
            char = bad.group()
            if char == b"/":
                raise PathError("encoded slash in path")
            if char == b"\\":
                raise PathError("encoded backslash in path")
            raise PathError("encoded control character in path")
    try:
        text = data.decode("utf-8")  # strict: overlong forms and surrogates are errors
    except UnicodeDecodeError:
        raise PathError("invalid UTF-8 in path") from None
    if "%" in text and _DOUBLE_ENCODED.search(text):
        raise PathError("double percent-encoding in path")
    if not text.isascii():
        _check_unicode(text)
    return text


def _check_unicode(text: str) -> None:
    # C1 controls (U+0080-U+009F) are as dangerous as C0 ones to header- and log-handling backends.
    if any(unicodedata.category(c) == "Cc" for c in text):
        raise PathError("encoded control character in path")
    folded = unicodedata.normalize("NFKC", text)
    if folded in _DOT_SEGMENTS or any(folded.count(c) > text.count(c) for c in _LOOKALIKE_TARGETS):
        raise PathError("Unicode look-alike of a separator or dot in path")


_SHORT_NAME = re.compile(r"~[0-9]")


def _check_windows_name(name: str) -> None:
    """Refuse segment names an IIS/Windows backend would map onto a different name.

    Windows drops trailing dots and spaces (``/admin.`` opens ``/admin``), answers to 8.3 short names
    (``/ADMINI~1``) and alternate data streams (``/admin::$DATA``); .NET compares with upper-case
    mappings, under which dotless i, the Kelvin sign, long s and ligatures become ASCII letters
    that Unicode case folding alone would not produce (``/adm\u0131n`` is ``/ADMIN``).
    """
    if name.endswith(".") or name[-1:].isspace():
        raise PathError("trailing dot or space in a path segment (Windows ignores it)")
    if ":" in name:
        raise PathError("colon in a path segment (Windows stream syntax)")
    if "~" in name and _SHORT_NAME.search(name):
        raise PathError("Windows short-name form (~N) in path")
    if not name.isascii():
        for char in name:
            if not char.isascii() and any(
                any(c.isascii() and c.isalpha() for c in mapped) for mapped in (char.upper(), char.lower(), char.casefold())
            ):
                raise PathError("character whose case mapping is an ASCII letter in path")


def _encode_segment(name: str, params: str | None) -> str:
    encoded = quote(name, safe=_SAFE)
    if params is None:
        return encoded
    return encoded + ";" + quote(params, safe=_SAFE_PARAMS)
