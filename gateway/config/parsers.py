"""Value parsers: each takes a raw TOML or environment value and returns the typed value.

A parser raises ValueError with a reason a person can act on; the loader prefixes the file and key.
Environment variables are always strings, so every parser also reads the string spelling
("true", "8080", "10.0.0.0/8, 127.0.0.1").
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from gateway.durations import parse_duration

__all__ = [
    "MAX_AUTO_WORKERS",
    "MAX_LOGO_URL",
    "SESSION_STORE_SCHEMES",
    "SQLITE_URL",
    "USER_STORE_SCHEMES",
    "Network",
    "Parser",
    "boolean",
    "cache_ttl",
    "choice",
    "duration",
    "header_name",
    "hosts",
    "int_in",
    "level",
    "logo_url",
    "networks",
    "optional_origin",
    "optional_string",
    "optional_text",
    "origin",
    "redacted_url",
    "seconds",
    "session_store_url",
    "size_in",
    "string",
    "strip_headers",
    "text",
    "user_store_url",
    "workers",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Parser = Callable[[Any], Any]


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def int_in(low: int, high: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected a whole number, got {value!r}")
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"expected a number from {low} to {high}, got {number}")
        return number

    return parse


def string(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value.strip()


def optional_string(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return string(value)


SQLITE_URL = "sqlite:///"
USER_STORE_SCHEMES = ("sqlite", "postgresql", "postgres")
SESSION_STORE_SCHEMES = ("sqlite", "redis", "rediss")
_EXAMPLES = {"sqlite": "sqlite:///PATH", "postgresql": "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
             "postgres": "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
             "redis": "redis://[:PASSWORD@]HOST[:PORT][/DB][?prefix=P]",
             "rediss": "rediss://[:PASSWORD@]HOST[:PORT][/DB][?prefix=P]"}


# Query options a store URL may carry (each passed to the driver); anything else is refused, and a
# password must be in the user info, where every message masks it.
_OPTIONS = {"postgresql": frozenset({"sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "application_name",
                                     "target_session_attrs"}),
            "redis": frozenset({"prefix"})}
_UNSAFE_IN_USERINFO = "@/?#"


def redacted_url(url: str) -> str:
    """What messages and logs may show of a store URL: the user info's password (everything up to
    the last ``@`` but a user name) as ``***``, query values as ``***`` (but ``prefix``), no fragment.
    Safe for a malformed URL too: it never parses the text as the driver would."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if "@" in url else url
    shown_user = ""
    if "@" in rest:
        userinfo, _, rest = rest.rpartition("@")
        user = userinfo.split(":", 1)[0]
        postgres = scheme.lower().startswith("postgres")
        shown_user = f"{user}:***@" if postgres and ":" in userinfo and not set(user) & set(_UNSAFE_IN_USERINFO) \
            else "***@"
    rest = rest.split("#", 1)[0]
    base, question, query = rest.partition("?")
    if question:
        pairs = parse_qsl(query, keep_blank_values=True)
        base += "?" + "&".join(f"{key}={value if key == 'prefix' else '***'}" for key, value in pairs)
    return f"{scheme}://{shown_user}{base}"


def _store_url(value: Any, schemes: tuple[str, ...], holds: str) -> str | None:
    text = optional_string(value)
    if text is None:
        return None
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in schemes:
        expected = " or ".join(dict.fromkeys(_EXAMPLES[s] for s in schemes))
        shown = redacted_url(text) if scheme else repr(redacted_url(text))
        if scheme in _EXAMPLES:
            raise ValueError(f"{scheme}:// cannot hold {holds}: expected {expected}")
        raise ValueError(f"{shown}: not a store URL: expected {expected}")
    if scheme == "sqlite":
        if not text.startswith(SQLITE_URL) or len(text) == len(SQLITE_URL) or "?" in text or "#" in text:
            raise ValueError(f"{text!r}: expected sqlite:///PATH (a file, without ?options)")
        return text
    shown = redacted_url(text)
    rest = text.split("://", 1)[1]
    if rest.count("@") > 1 or ("@" in rest and set(rest.rpartition("@")[0]) & set(_UNSAFE_IN_USERINFO)):
        raise ValueError(f"{shown}: the user name or password holds an unencoded @, /, ? or #:"
                         " percent-encode them (%40 %2F %3F %23)")
    try:
        parts = urlsplit(text)
        port = parts.port  # raises on a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"{shown}: {exc}") from None
    if not parts.hostname:
        raise ValueError(f"{shown}: no host: expected {_EXAMPLES[scheme]}")
    if parts.fragment:
        raise ValueError(f"{shown}: a store URL has no #fragment")
    family = "postgresql" if scheme.startswith("postgres") else "redis"
    options = {key for key, _ in parse_qsl(parts.query, keep_blank_values=True)}
    if "password" in options:
        raise ValueError(f"{shown}: put the password in the user info ({_EXAMPLES[scheme]}), not in ?password=")
    unknown = sorted(options - _OPTIONS[family])
    if unknown:
        raise ValueError(f"{shown}: unknown option {unknown[0]!r} (only {', '.join(sorted(_OPTIONS[family]))})")
    if family == "postgresql":
        if not parts.path.strip("/"):
            raise ValueError(f"{shown}: no database name: expected {_EXAMPLES[scheme]}")
    else:
        db = parts.path.strip("/")
        if db and not (db.isdigit() and int(db) < 16):
            raise ValueError(f"{shown}: the Redis database must be a number from 0 to 15")
    del port  # only checked
    return text


def user_store_url(value: Any) -> str | None:
    """``[store] users``: sqlite:///PATH (relative to the config file's folder, ``sqlite:////abs``
    absolute) or postgresql://..., checked as far as can be without connecting."""
    return _store_url(value, USER_STORE_SCHEMES, "users")


def session_store_url(value: Any) -> str | None:
    """``[store] sessions``: sqlite:///PATH or redis://..., checked without connecting."""
    return _store_url(value, SESSION_STORE_SCHEMES, "sessions")


def duration(value: Any) -> int:
    """Whole seconds: a number, or "90s", "15m", "12h", "1h30m", "7d" (gateway.durations)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"a duration must be longer than zero, got {value}")
        return value
    return parse_duration(value)


def seconds(value: Any) -> float:
    return float(duration(value))


MAX_AUTO_WORKERS = 8


def workers(value: Any) -> int:
    """A number of worker processes, or "auto": one per core (at most MAX_AUTO_WORKERS), as nginx's
    worker_processes auto. Measured: throughput grows with workers up to the cores."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))
    try:
        return int_in(1, 64)(value)
    except ValueError:
        raise ValueError(f"expected \"auto\" or a whole number from 1 to 64, got {value!r}") from None


def cache_ttl(value: Any) -> float:
    """Seconds (0 to 1) as a number, "750ms" or "1s": the contract lets changes take up to 1 s."""
    text = str(value).strip().lower() if not isinstance(value, bool) else ""
    try:
        number = float(text[:-2]) / 1000 if text.endswith("ms") else float(text.removesuffix("s"))
    except ValueError:
        raise ValueError(f"expected a time from 0 to 1s such as \"750ms\", got {value!r}") from None
    if not 0 <= number <= 1:
        raise ValueError(f"expected a time from 0 to 1s (changes must reach the gateway within 1 s), got {value!r}")
    return number


# Binary units, written 512k (as nginx reads it) or 512KiB; "MB" is refused as ambiguous.
_SIZE_UNITS = {"": 1, "b": 1, **{f"{u}{s}": 1024 ** (i + 1) for i, u in enumerate("kmg") for s in ("", "ib")}}
_SIZE = re.compile(r"\s*(\d+)([a-z]*)\s*")


def size_in(low: int, high: int) -> Callable[[Any], int]:
    """A size in bytes: a whole number, or with a binary unit (512k, 10m, 16MiB, 1GiB)."""

    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected a size such as 16MiB, got {value!r}")
        if isinstance(value, int):
            number = value
        else:
            match = _SIZE.fullmatch(str(value).lower())
            if not match or match.group(2) not in _SIZE_UNITS:
                raise ValueError(f"expected a size such as 10m or 16MiB (units k, m, g, KiB, MiB, GiB), got {value!r}")
            number = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
        if not low <= number <= high:
            raise ValueError(f"expected a size from {low} to {high} bytes, got {number}")
        return number

    return parse


def _items(value: Any) -> Any:
    """A TOML list as it is, or the comma-separated string an environment variable holds."""
    return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value


def networks(value: Any) -> tuple[Network, ...]:
    items = _items(value)
    if not isinstance(items, list):
        raise ValueError(f"expected a list of addresses or CIDRs, got {value!r}")
    found = []
    for item in items:
        try:
            found.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {item!r}") from None
    return tuple(found)


_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?"
                   r"|\[[0-9a-f:.]+\]")


def hosts(value: Any) -> tuple[str, ...]:
    """Host header values: host or host:port (a name, an IPv4 address or a bracketed IPv6 one)."""
    items = _items(value)
    if not isinstance(items, list):
        raise ValueError(f"expected a list of host names such as [\"app.example.com\"], got {value!r}")
    found = []
    for item in items:
        text = str(item).strip().lower()
        name, colon, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
        if not colon:
            name = text
        if not _HOST.fullmatch(name) or (colon and not (port.isdigit() and 0 < int(port) < 65536)):
            raise ValueError(f"not a host name or host:port: {item!r}")
        found.append(text)
    return tuple(found)


def origin(value: Any) -> str:
    text = string(value).rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"expected http://host[:port] or https://host[:port], got {value!r}")
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"expected only scheme://host[:port], without path, query or credentials, got {value!r}")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"bad port in {value!r}") from None
    return text


def optional_origin(value: Any) -> str | None:
    return None if value in (None, "") else origin(value)


def header_name(value: Any) -> str:
    text = string(value)
    if not all(c.isalnum() or c == "-" for c in text):
        raise ValueError(f"expected an HTTP header name (letters, digits, '-'), got {value!r}")
    return text


# RFC 9110 token characters, less "*", which marks a prefix at the end of a strip_headers name.
_STRIP_NAME = re.compile(r"[A-Za-z0-9!#$%&'+.^_`|~-]+\*?")
# Removing these would leave the app unable to tell where a request body ends.
_FRAMING_HEADERS = ("content-length", "transfer-encoding")


def strip_headers(value: Any) -> tuple[str, ...]:
    """Header names, or prefixes ending in "*": a list, or "A, B*" (as an environment variable reads)."""
    items = _items(value)
    if not isinstance(items, list):
        raise ValueError(f"expected a list of header names, got {value!r}")
    names: dict[str, None] = {}
    for item in items:
        if not isinstance(item, str) or not _STRIP_NAME.fullmatch(item):
            raise ValueError(f"expected header names (letters, digits, '-', '_'; a trailing '*' for a prefix), "
                             f"got {item!r}")
        folded = item.lower().replace("_", "-")
        prefix = folded.endswith("*")
        if any(framing.startswith(folded[:-1]) if prefix else framing == folded for framing in _FRAMING_HEADERS):
            raise ValueError(f"{item!r} would remove Content-Length or Transfer-Encoding, which frame the body")
        names[item] = None
    return tuple(names)


def choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = string(value).lower()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return text

    return parse


def text(max_length: int) -> Callable[[Any], str]:
    """One line of text for a page: escaped when shown, so only length and control characters matter."""

    def parse(value: Any) -> str:
        line = string(value)
        if len(line) > max_length:
            raise ValueError(f"at most {max_length} characters, got {len(line)}")
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in line):
            raise ValueError(f"control characters (line breaks, tabs) are not allowed, got {value!r}")
        return line

    return parse


def optional_text(max_length: int) -> Callable[[Any], str | None]:
    parse = text(max_length)
    return lambda value: None if value in (None, "") else parse(value)


MAX_LOGO_URL = 2048


def logo_url(value: Any) -> str | None:
    """A path on this gateway's origin or an https URL: nothing that could run script or leak over http."""
    if value in (None, ""):
        return None
    url = string(value)
    if len(url) > MAX_LOGO_URL or not url.isascii() or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in url):
        raise ValueError(f"expected a local path or an https URL (ASCII, no spaces, at most {MAX_LOGO_URL} characters), "
                         f"got {value!r}")
    if "\\" in url:
        raise ValueError(f"backslashes are not allowed, got {value!r}")
    parts = urlsplit(url)
    if url.startswith("/") and not url.startswith("//") and not parts.scheme and not parts.netloc:
        return url
    if parts.scheme == "https" and parts.hostname and not parts.username and not parts.password:
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"bad port in {value!r}") from None
        return url
    raise ValueError(f"expected a local path (/static/logo.svg) or an https:// URL, got {value!r}")


def level(value: Any) -> str:
    name = string(value).lower()
    if name not in {"debug", "info", "warning", "error"}:
        raise ValueError(f"expected debug, info, warning or error, got {value!r}")
    return name
