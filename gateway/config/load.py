"""gateway.toml + GATEWAY_<SECTION>_<KEY> environment overrides -> one frozen, validated Settings.

Every problem is collected and reported together (one line each, naming the file and key), so an
operator fixes a config in one round trip. No Quart import here: the CLI and tests use this alone.
"""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from gateway.durations import parse_duration

CONFIG_ENV = "GATEWAY_CONFIG"
DEFAULT_CONFIG = "gateway.toml"
SECRET_ENV = "GATEWAY_SERVER_SECRET_KEY"
MIN_SECRET_LENGTH = 32

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
T = TypeVar("T")


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str
    port: int
    secret_key: str | None  # None only for commands that never sign anything
    trusted_proxies: tuple[Network, ...]
    public_url: str | None  # external origin, e.g. https://app.example.com; else taken from Host
    workers: int = 1  # server processes sharing the listening socket (the setting's default: one per core)
    # TLS served by the gateway itself: both files or neither (checked, and loaded once, at start).
    certfile: Path | None = None
    keyfile: Path | None = None
    hsts: bool = True  # Strict-Transport-Security on every response, whenever the browser uses HTTPS
    max_body_size: int = 0  # bytes of a proxied request body; 0 = no limit
    max_header_size: int = 64 * 1024  # request line + headers; then 431
    header_timeout: float = 20.0  # seconds for a request's head to arrive; then 408
    max_clients: int = 10_000  # connections and requests at once per worker; then 503
    # Host values browsers may use (host or host:port, lower case); empty: any well-formed Host,
    # unless public_url names one. Another Host gets 400 and is never copied anywhere.
    hosts: tuple[str, ...] = ()
    body_timeout: float = 30.0  # seconds a request body may pause between chunks; then 408
    body_min_rate: int = 1024  # bytes/s a body must average once body_timeout has passed; 0 = none
    send_timeout: float = 60.0  # seconds a client may take to accept a piece of a long response

    @property
    def tls(self) -> bool:
        return self.certfile is not None


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    url: str  # scheme://host[:port], no path
    connect_timeout: float
    read_timeout: float
    write_timeout: float
    pool_timeout: float
    max_connections: int
    preserve_host: bool
    transport: str = "aiohttp"  # "aiohttp" or "httpx"
    # Largest WebSocket message, in bytes, on both legs (Uvicorn's ws_max_size and the upstream client).
    websocket_max_message: int = 16 * 1024 * 1024
    # Upstream connections one client address may hold at once in one worker; then 429. Keeps one
    # client (slow to read, slow to send) from taking the whole pool. 0 = no limit.
    max_connections_per_client: int = 32
    # Bytes of WebSocket messages all relays of one worker may hold at once (gateway/proxy/memory.py).
    websocket_memory: int = 256 * 1024 * 1024


BINDINGS = ("none", "user_agent", "client")


@dataclass(frozen=True, slots=True)
class SessionSettings:
    secure_cookie: bool
    idle_timeout: int
    absolute_timeout: int
    remember_lifetime: int = 0  # cookie lifetime with "keep me signed in"; 0 = absolute_timeout
    bind: str = "user_agent"  # one of BINDINGS
    cache_ttl: float = 0.75  # seconds a session row may be served from memory; 0 = always ask the store

    @property
    def persistent_cookie_lifetime(self) -> int:
        return self.remember_lifetime or self.absolute_timeout

    @property
    def cookie_name(self) -> str:
        # __Host- makes the browser refuse the cookie unless Secure, Path=/ and no Domain: no tossing.
        return "__Host-gateway_session" if self.secure_cookie else "gateway_session"

    @property
    def csrf_cookie_name(self) -> str:
        return "__Host-gateway_csrf" if self.secure_cookie else "gateway_csrf"

    @property
    def device_cookie_name(self) -> str:
        return "__Host-gateway_device" if self.secure_cookie else "gateway_device"

    @property
    def cookie_names(self) -> tuple[str, ...]:
        """Every cookie the gateway owns: never forwarded upstream, never settable by the app."""
        return (self.cookie_name, self.csrf_cookie_name, self.device_cookie_name)


@dataclass(frozen=True, slots=True)
class StoreSettings:
    path: Path


@dataclass(frozen=True, slots=True)
class PolicySettings:
    dir: Path
    case_insensitive: bool
    allow_path_params: bool


@dataclass(frozen=True, slots=True)
class HeaderSettings:
    user: str
    roles: str


@dataclass(frozen=True, slots=True)
class ProxySettings:
    # Request headers removed before forwarding, beside the built-in identity look-alikes: names as
    # written (compared without case, "_" as "-"); a trailing "*" makes a name a prefix.
    strip_headers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PasswordSettings:
    time_cost: int
    memory_cost: int  # KiB
    parallelism: int
    max_concurrent: int  # verifications at once; each holds memory_cost KiB


LOG_FORMATS = ("json", "text")
DEFAULT_METRICS_ALLOW = ["127.0.0.1/32", "::1/128"]


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str
    format: str = "json"  # one of LOG_FORMATS: every line on standard error (audit lines are JSON always)
    access: bool = True  # one access-log line per request (logger gateway.access)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    # Client addresses (judged like everywhere else: the peer, or behind trusted proxies the real
    # client) that may read /.gateway/metrics; everyone else gets 404. Empty: nobody.
    allow: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in DEFAULT_METRICS_ALLOW)


DEFAULT_PRODUCT_NAME = "Gateway"
DEFAULT_SIGN_IN_TITLE = "Sign in"


@dataclass(frozen=True, slots=True)
class UiSettings:
    """What browser users see on the gateway's own pages. Text is shown escaped, never as HTML."""

    product_name: str = DEFAULT_PRODUCT_NAME
    title: str = DEFAULT_SIGN_IN_TITLE  # the sign-in page's heading
    logo_url: str | None = None  # a local path ("/static/logo.svg") or an https URL
    logo_text: str | None = None  # a text mark when there is no logo image; else the image's alt text
    footer_text: str | None = None

    @property
    def logo_origin(self) -> str | None:
        """The origin the logo is loaded from when it is not this gateway (added to the pages' CSP)."""
        if self.logo_url is None or self.logo_url.startswith("/"):
            return None
        parts = urlsplit(self.logo_url)
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True)
class Settings:
    config_file: Path
    server: ServerSettings
    upstream: UpstreamSettings
    session: SessionSettings
    store: StoreSettings
    policy: PolicySettings
    headers: HeaderSettings
    passwords: PasswordSettings
    log: LogSettings
    warnings: tuple[str, ...]
    ui: UiSettings = UiSettings()
    metrics: MetricsSettings = MetricsSettings()
    proxy: ProxySettings = ProxySettings()


# --- value parsers: each takes the raw TOML/env value and returns the typed value or raises ValueError


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "1", "yes", "on"}:
        return True
    if isinstance(value, str) and value.strip().lower() in {"false", "0", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _int_in(low: int, high: int) -> Callable[[Any], int]:
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


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value.strip()


def _optional_str(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _str(value)


def _duration(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"a duration must be longer than zero, got {value}")
        return value
    return parse_duration(value)


def _seconds(value: Any) -> float:
    return float(_duration(value))


MAX_AUTO_WORKERS = 8


def _workers(value: Any) -> int:
    """A number of worker processes, or "auto": one per core (at most MAX_AUTO_WORKERS), as nginx's
    worker_processes auto. Measured: throughput grows with workers up to the cores."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return max(1, min(os.cpu_count() or 1, MAX_AUTO_WORKERS))
    try:
        return _int_in(1, 64)(value)
    except ValueError:
        raise ValueError(f"expected \"auto\" or a whole number from 1 to 64, got {value!r}") from None


def _cache_ttl(value: Any) -> float:
    """Seconds (0 to 1) as a number, "750ms" or "1s": the contract lets changes take up to 1 s."""
    text = str(value).strip().lower() if not isinstance(value, bool) else ""
    try:
        seconds = float(text[:-2]) / 1000 if text.endswith("ms") else float(text.removesuffix("s"))
    except ValueError:
        raise ValueError(f"expected a time from 0 to 1s such as \"750ms\", got {value!r}") from None
    if not 0 <= seconds <= 1:
        raise ValueError(f"expected a time from 0 to 1s (changes must reach the gateway within 1 s), got {value!r}")
    return seconds


# Binary units, written 512k (as nginx reads it) or 512KiB; "MB" is refused as ambiguous.
_SIZE_UNITS = {"": 1, "b": 1, **{f"{u}{s}": 1024 ** (i + 1) for i, u in enumerate("kmg") for s in ("", "ib")}}
_SIZE = re.compile(r"\s*(\d+)([a-z]*)\s*")


def _size_in(low: int, high: int) -> Callable[[Any], int]:
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


def _networks(value: Any) -> tuple[Network, ...]:
    items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list of addresses or CIDRs, got {value!r}")
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {item!r}") from None
    return tuple(networks)


_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*\.?"
                   r"|\[[0-9a-f:.]+\]")


def _hosts(value: Any) -> tuple[str, ...]:
    """Host header values: host or host:port (a name, an IPv4 address or a bracketed IPv6 one)."""
    items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError(f"expected a list of host names such as [\"app.example.com\"], got {value!r}")
    hosts = []
    for item in items:
        text = str(item).strip().lower()
        name, colon, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
        if not colon:
            name = text
        if not _HOST.fullmatch(name) or (colon and not (port.isdigit() and 0 < int(port) < 65536)):
            raise ValueError(f"not a host name or host:port: {item!r}")
        hosts.append(text)
    return tuple(hosts)


def _origin(value: Any) -> str:
    text = _str(value).rstrip("/")
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


def _optional_origin(value: Any) -> str | None:
    return None if value in (None, "") else _origin(value)


def _header_name(value: Any) -> str:
    text = _str(value)
    if not all(c.isalnum() or c == "-" for c in text):
        raise ValueError(f"expected an HTTP header name (letters, digits, '-'), got {value!r}")
    return text


# RFC 9110 token characters, less "*", which marks a prefix at the end of a strip_headers name.
_STRIP_NAME = re.compile(r"[A-Za-z0-9!#$%&'+.^_`|~-]+\*?")
# Removing these would leave the app unable to tell where a request body ends.
_FRAMING_HEADERS = ("content-length", "transfer-encoding")


def _strip_headers(value: Any) -> tuple[str, ...]:
    """Header names, or prefixes ending in "*": a list, or "A, B*" (as an environment variable reads)."""
    items = [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value
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


def _choice(*allowed: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _str(value).lower()
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return text

    return parse


_binding = _choice(*BINDINGS)


def _text(max_length: int) -> Callable[[Any], str]:
    """One line of text for a page: escaped when shown, so only length and control characters matter."""

    def parse(value: Any) -> str:
        text = _str(value)
        if len(text) > max_length:
            raise ValueError(f"at most {max_length} characters, got {len(text)}")
        if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text):
            raise ValueError(f"control characters (line breaks, tabs) are not allowed, got {value!r}")
        return text

    return parse


def _optional_text(max_length: int) -> Callable[[Any], str | None]:
    parse = _text(max_length)
    return lambda value: None if value in (None, "") else parse(value)


MAX_LOGO_URL = 2048


def _logo_url(value: Any) -> str | None:
    """A path on this gateway's origin or an https URL: nothing that could run script or leak over http."""
    if value in (None, ""):
        return None
    text = _str(value)
    if len(text) > MAX_LOGO_URL or not text.isascii() or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in text):
        raise ValueError(f"expected a local path or an https URL (ASCII, no spaces, at most {MAX_LOGO_URL} characters), "
                         f"got {value!r}")
    if "\\" in text:
        raise ValueError(f"backslashes are not allowed, got {value!r}")
    parts = urlsplit(text)
    if text.startswith("/") and not text.startswith("//") and not parts.scheme and not parts.netloc:
        return text
    if parts.scheme == "https" and parts.hostname and not parts.username and not parts.password:
        try:
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError(f"bad port in {value!r}") from None
        return text
    raise ValueError(f"expected a local path (/static/logo.svg) or an https:// URL, got {value!r}")


def _level(value: Any) -> str:
    text = _str(value).lower()
    if text not in {"debug", "info", "warning", "error"}:
        raise ValueError(f"expected debug, info, warning or error, got {value!r}")
    return text


Parser = Callable[[Any], Any]

# (section, key) -> (parser, default). A default of None means "optional, no value".
SCHEMA: dict[tuple[str, str], tuple[Parser, Any]] = {
    ("server", "host"): (_str, "127.0.0.1"),
    ("server", "port"): (_int_in(1, 65535), 8080),
    ("server", "secret_key_file"): (_optional_str, None),
    ("server", "trusted_proxies"): (_networks, []),
    ("server", "public_url"): (_optional_origin, None),
    ("server", "workers"): (_workers, "auto"),
    ("server", "certfile"): (_optional_str, None),
    ("server", "keyfile"): (_optional_str, None),
    ("server", "hsts"): (_bool, True),
    ("server", "max_body_size"): (_size_in(0, 2**62), 0),
    ("server", "max_header_size"): (_size_in(1024, 1024**2), "64k"),
    ("server", "header_timeout"): (_seconds, "20s"),
    ("server", "max_clients"): (_int_in(1, 1_000_000), 10_000),
    ("server", "hosts"): (_hosts, []),
    ("server", "body_timeout"): (_seconds, "30s"),
    ("server", "body_min_rate"): (_size_in(0, 1024**3), "1k"),
    ("server", "send_timeout"): (_seconds, "60s"),
    ("upstream", "url"): (_origin, "http://127.0.0.1:8081"),
    ("upstream", "connect_timeout"): (_seconds, "5s"),
    ("upstream", "read_timeout"): (_seconds, "60s"),
    ("upstream", "write_timeout"): (_seconds, "60s"),
    ("upstream", "pool_timeout"): (_seconds, "5s"),
    ("upstream", "max_connections"): (_int_in(1, 10_000), 100),
    ("upstream", "preserve_host"): (_bool, True),
    ("upstream", "transport"): (_choice("aiohttp", "httpx"), "aiohttp"),
    ("upstream", "websocket_max_message"): (_size_in(1024, 1024**3), "16MiB"),
    ("upstream", "max_connections_per_client"): (_int_in(0, 10_000), 32),
    ("upstream", "websocket_memory"): (_size_in(2 * 1024, 64 * 1024**3), "256MiB"),
    ("session", "secure_cookie"): (_bool, True),
    ("session", "idle_timeout"): (_duration, "30m"),
    ("session", "absolute_timeout"): (_duration, "12h"),
    ("session", "remember_lifetime"): (_duration, None),
    ("session", "bind"): (_binding, "user_agent"),
    ("session", "cache_ttl"): (_cache_ttl, "750ms"),
    ("store", "path"): (_str, "var/gateway.db"),
    ("policy", "dir"): (_str, "policies"),
    ("policy", "case_insensitive"): (_bool, False),
    ("policy", "allow_path_params"): (_bool, False),
    ("headers", "user"): (_header_name, "X-Forwarded-User"),
    ("headers", "roles"): (_header_name, "X-Forwarded-Roles"),
    ("passwords", "time_cost"): (_int_in(1, 100), 3),
    ("passwords", "memory_cost"): (_int_in(8, 4 * 1024 * 1024), 65536),
    ("passwords", "parallelism"): (_int_in(1, 64), 4),
    ("passwords", "max_concurrent"): (_int_in(1, 64), 2),
    ("log", "level"): (_level, "info"),
    ("ui", "product_name"): (_text(64), DEFAULT_PRODUCT_NAME),
    ("ui", "title"): (_text(100), DEFAULT_SIGN_IN_TITLE),
    ("ui", "logo_url"): (_logo_url, None),
    ("ui", "logo_text"): (_optional_text(64), None),
    ("ui", "footer_text"): (_optional_text(300), None),
    ("log", "format"): (_choice(*LOG_FORMATS), "json"),
    ("log", "access"): (_bool, True),
    ("metrics", "allow"): (_networks, DEFAULT_METRICS_ALLOW),
    ("proxy", "strip_headers"): (_strip_headers, []),
}

# Keys that may never be written in the file itself.
FORBIDDEN_IN_FILE = {("server", "secret_key"): "put the key in secret_key_file or the GATEWAY_SERVER_SECRET_KEY variable"}


def config_path(explicit: str | Path | None, env: Mapping[str, str]) -> Path:
    """--config FILE, else $GATEWAY_CONFIG, else ./gateway.toml."""
    return Path(explicit or env.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_settings(
    explicit: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    *,
    require_secret: bool = False,
) -> Settings:
    """Read, override, validate; raise ConfigError listing every problem.

    ``require_secret`` adds what only ``serve`` needs: the secret key, and TLS files that load."""
    env = os.environ if env is None else env
    path = config_path(explicit, env)
    problems: list[str] = []
    raw: dict[str, Any] = {}
    try:
        with path.open("rb") as handle:
            raw = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found (give --config FILE or set {CONFIG_ENV})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None

    values: dict[tuple[str, str], Any] = {key: default for key, (_, default) in SCHEMA.items()}
    origin: dict[tuple[str, str], str] = {key: "default" for key in SCHEMA}
    for section, table in raw.items():
        if not isinstance(table, dict):
            problems.append(f"{path}: [{section}]: expected a table")
            continue
        for key, value in table.items():
            if (section, key) in FORBIDDEN_IN_FILE:
                problems.append(f"{path}: {section}.{key}: not allowed here; {FORBIDDEN_IN_FILE[(section, key)]}")
            elif (section, key) not in SCHEMA:
                problems.append(f"{path}: {section}.{key}: unknown setting")
            else:
                values[(section, key)] = value
                origin[(section, key)] = f"{path}: {section}.{key}"

    for name, value in env.items():
        if not name.startswith("GATEWAY_") or name in {CONFIG_ENV, SECRET_ENV}:
            continue
        key = _env_key(name)
        if key is None:
            problems.append(f"environment: {name}: unknown setting")
        else:
            values[key] = value
            origin[key] = f"environment: {name}"

    parsed: dict[tuple[str, str], Any] = {}
    for key, (parser, _) in SCHEMA.items():
        try:
            parsed[key] = None if values[key] is None else parser(values[key])
        except ValueError as exc:
            where = origin[key] if origin[key] != "default" else f"{path}: {key[0]}.{key[1]}"
            problems.append(f"{where}: {exc}")

    base = path.resolve().parent
    secret, secret_problems = _secret(parsed.get(("server", "secret_key_file")), env, base, path, require_secret)
    problems.extend(secret_problems)
    certfile, keyfile, tls_problems = _tls_files(
        parsed.get(("server", "certfile")), parsed.get(("server", "keyfile")), base, path, check=require_secret
    )
    problems.extend(tls_problems)
    warnings: list[str] = []
    if parsed.get(("session", "secure_cookie")) is False:
        warnings.append(
            f"{path}: session.secure_cookie is false: the session cookie is sent over plain HTTP; use only for local testing"
        )
    idle, absolute = parsed.get(("session", "idle_timeout")), parsed.get(("session", "absolute_timeout"))
    if isinstance(idle, int) and isinstance(absolute, int) and idle > absolute:
        problems.append(f"{path}: session.idle_timeout: longer than session.absolute_timeout")
    largest, budget = parsed.get(("upstream", "websocket_max_message")), parsed.get(("upstream", "websocket_memory"))
    if isinstance(largest, int) and isinstance(budget, int) and budget < 2 * largest:
        # One socket may relay a message of the largest size each way at once: a smaller budget
        # would close it with 1013 on an idle gateway.
        budget_key = ("upstream", "websocket_memory")
        where = origin[budget_key] if origin[budget_key] != "default" else f"{path}: upstream.websocket_memory"
        problems.append(f"{where}: {budget} bytes is less than twice upstream.websocket_max_message ({largest} bytes)")
    if problems:
        raise ConfigError(problems)

    def get(section: str, key: str) -> Any:
        return parsed[(section, key)]

    def settings_of(cls: type[T], name: str, **given: Any) -> T:
        """A section's settings: each field from the key of the same name, unless given here."""
        keys = {f.name for f in fields(cast(Any, cls)) if f.init and (name, f.name) in parsed} - given.keys()
        return cls(**{key: parsed[(name, key)] for key in keys}, **given)

    return Settings(
        config_file=path.resolve(),
        server=settings_of(ServerSettings, "server", secret_key=secret, certfile=certfile, keyfile=keyfile),
        upstream=settings_of(UpstreamSettings, "upstream"),
        session=settings_of(SessionSettings, "session", remember_lifetime=get("session", "remember_lifetime") or 0),
        store=StoreSettings(path=base / get("store", "path")),
        policy=settings_of(PolicySettings, "policy", dir=base / get("policy", "dir")),
        headers=settings_of(HeaderSettings, "headers"),
        passwords=settings_of(PasswordSettings, "passwords"),
        log=settings_of(LogSettings, "log"),
        warnings=tuple(warnings),
        ui=settings_of(UiSettings, "ui"),
        metrics=settings_of(MetricsSettings, "metrics"),
        proxy=settings_of(ProxySettings, "proxy"),
    )


def _env_key(name: str) -> tuple[str, str] | None:
    """GATEWAY_UPSTREAM_CONNECT_TIMEOUT -> ("upstream", "connect_timeout"); sections have no '_'."""
    rest = name[len("GATEWAY_") :].lower()
    section, _, key = rest.partition("_")
    return (section, key) if (section, key) in SCHEMA else None


def _tls_files(
    certfile: str | None, keyfile: str | None, base: Path, path: Path, *, check: bool
) -> tuple[Path | None, Path | None, list[str]]:
    """Both or neither; with ``check`` (serve) the pair must also load, so a bad file is one clear
    line here rather than a traceback from inside the server's start-up."""
    if certfile is None and keyfile is None:
        return None, None, []
    if certfile is None or keyfile is None:
        given, missing = ("certfile", "keyfile") if keyfile is None else ("keyfile", "certfile")
        return None, None, [f"{path}: server.{missing}: needed with server.{given} (give both files, or neither)"]
    cert, key = base / certfile, base / keyfile
    problems: list[str] = []
    if check:
        for name, file in (("certfile", cert), ("keyfile", key)):
            try:
                with file.open("rb") as handle:
                    handle.read(1)
            except OSError as exc:
                problems.append(f"{path}: server.{name}: cannot read {file}: {exc.strerror}")
        if not problems:
            try:
                # An empty password makes an encrypted key fail here instead of prompting on a terminal.
                ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key, password=b"")
            except (ssl.SSLError, OSError) as exc:
                problems.append(
                    f"{path}: server.certfile/keyfile: cannot load {cert} with {key} "
                    f"(PEM certificate chain and its unencrypted private key expected): {exc}"
                )
    return cert, key, problems


def _secret(
    key_file: str | None, env: Mapping[str, str], base: Path, path: Path, required: bool
) -> tuple[str | None, list[str]]:
    if env.get(SECRET_ENV):
        secret = env[SECRET_ENV].strip()
        where = f"environment: {SECRET_ENV}"
    elif key_file:
        file = base / key_file
        try:
            secret = file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            if not required:
                return None, []
            return None, [
                f"{path}: server.secret_key_file: {file} not found; create it with "
                f"\"python3 -c 'import secrets; print(secrets.token_urlsafe(48))' > {file}\" and chmod 600"
            ]
        except (OSError, UnicodeDecodeError) as exc:
            return None, [f"{path}: server.secret_key_file: cannot read {file}: {exc}"]
        where = f"{file}"
    else:
        if not required:
            return None, []
        return None, [f"{path}: server.secret_key_file: not set and {SECRET_ENV} is empty; the gateway needs a secret key"]
    if len(secret) < MIN_SECRET_LENGTH:
        return None, [f"{where}: the secret key is too short (at least {MIN_SECRET_LENGTH} characters)"]
    return secret, []
