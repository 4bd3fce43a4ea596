"""The frozen settings the rest of the gateway reads: one dataclass per gateway.toml section.

A field named like a key of its section takes that key's parsed value, and its default is read
from the one table (``default(section, name)`` in config/schema.py), never written here: so a
``ServerSettings()`` built in a test holds what an empty gateway.toml gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from gateway.config.parsers import Network
from gateway.config.schema import default

__all__ = [
    "HeaderSettings",
    "LogSettings",
    "MetricsSettings",
    "PasswordSettings",
    "PolicySettings",
    "ProxySettings",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "StoreSettings",
    "UiSettings",
    "UpstreamSettings",
]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = default("server", "host")
    port: int = default("server", "port")
    secret_key: str | None = None  # from secret_key_file or the environment; None for commands that sign nothing
    trusted_proxies: tuple[Network, ...] = default("server", "trusted_proxies")
    public_url: str | None = default("server", "public_url")  # external origin; else taken from Host
    workers: int = default("server", "workers")  # server processes sharing the listening socket
    # TLS served by the gateway itself: both files or neither (checked, and loaded once, at start).
    certfile: Path | None = None
    keyfile: Path | None = None
    hsts: bool = default("server", "hsts")  # Strict-Transport-Security whenever the browser uses HTTPS
    max_body_size: int = default("server", "max_body_size")  # bytes of a proxied request body; 0 = no limit
    max_header_size: int = default("server", "max_header_size")  # request line + headers; then 431
    header_timeout: float = default("server", "header_timeout")  # seconds for a request's head; then 408
    max_clients: int = default("server", "max_clients")  # connections and requests at once per worker; then 503
    # Host values browsers may use (host or host:port, lower case); empty: any well-formed Host,
    # unless public_url names one. Another Host gets 400 and is never copied anywhere.
    hosts: tuple[str, ...] = default("server", "hosts")
    body_timeout: float = default("server", "body_timeout")  # seconds a body may pause between chunks; then 408
    body_min_rate: int = default("server", "body_min_rate")  # bytes/s a body must average after body_timeout
    send_timeout: float = default("server", "send_timeout")  # seconds a client may take to accept a piece

    @property
    def tls(self) -> bool:
        return self.certfile is not None


@dataclass(frozen=True, slots=True)
class UpstreamSettings:
    url: str = default("upstream", "url")  # scheme://host[:port], no path
    connect_timeout: float = default("upstream", "connect_timeout")
    read_timeout: float = default("upstream", "read_timeout")
    write_timeout: float = default("upstream", "write_timeout")
    pool_timeout: float = default("upstream", "pool_timeout")
    max_connections: int = default("upstream", "max_connections")
    preserve_host: bool = default("upstream", "preserve_host")
    transport: str = default("upstream", "transport")  # "aiohttp" or "httpx"
    # Largest WebSocket message, in bytes, on both legs (Uvicorn's ws_max_size and the upstream client).
    websocket_max_message: int = default("upstream", "websocket_max_message")
    # Upstream connections one client address may hold at once in one worker; then 429. Keeps one
    # client (slow to read, slow to send) from taking the whole pool. 0 = no limit.
    max_connections_per_client: int = default("upstream", "max_connections_per_client")
    # Bytes of WebSocket messages all relays of one worker may hold at once (gateway/proxy/memory.py).
    websocket_memory: int = default("upstream", "websocket_memory")


@dataclass(frozen=True, slots=True)
class SessionSettings:
    secure_cookie: bool = default("session", "secure_cookie")
    idle_timeout: int = default("session", "idle_timeout")
    absolute_timeout: int = default("session", "absolute_timeout")
    remember_lifetime: int = default("session", "remember_lifetime")  # 0 = absolute_timeout
    bind: str = default("session", "bind")  # one of schema.BINDINGS
    cache_ttl: float = default("session", "cache_ttl")  # seconds a row may be served from memory; 0 = never

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
    path: Path  # store.path, resolved against the config file's folder
    # store.users and store.sessions as URLs, a sqlite:/// path made absolute; either one not set
    # is the file at ``path`` (so with neither, one file holds everything, as before the URLs).
    users: str
    sessions: str


@dataclass(frozen=True, slots=True)
class PolicySettings:
    dir: Path  # policy.dir, resolved against the config file's folder
    case_insensitive: bool = default("policy", "case_insensitive")
    allow_path_params: bool = default("policy", "allow_path_params")


@dataclass(frozen=True, slots=True)
class HeaderSettings:
    user: str = default("headers", "user")
    roles: str = default("headers", "roles")


@dataclass(frozen=True, slots=True)
class ProxySettings:
    # Request headers removed before forwarding, beside the built-in identity look-alikes: names as
    # written (compared without case, "_" as "-"); a trailing "*" makes a name a prefix.
    strip_headers: tuple[str, ...] = default("proxy", "strip_headers")


@dataclass(frozen=True, slots=True)
class PasswordSettings:
    time_cost: int = default("passwords", "time_cost")
    memory_cost: int = default("passwords", "memory_cost")  # KiB
    parallelism: int = default("passwords", "parallelism")
    max_concurrent: int = default("passwords", "max_concurrent")  # verifications at once; each holds memory_cost KiB


@dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = default("log", "level")
    format: str = default("log", "format")  # every line on standard error (audit lines are JSON always)
    access: bool = default("log", "access")  # one access-log line per request (logger gateway.access)


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    # Client addresses (judged like everywhere else: the peer, or behind trusted proxies the real
    # client) that may read /.gateway/metrics; everyone else gets 404. Empty: nobody.
    allow: tuple[Network, ...] = default("metrics", "allow")


@dataclass(frozen=True, slots=True)
class UiSettings:
    """What browser users see on the gateway's own pages. Text is shown escaped, never as HTML."""

    product_name: str = default("ui", "product_name")
    title: str = default("ui", "title")  # the sign-in page's heading
    logo_url: str | None = default("ui", "logo_url")  # a local path ("/static/logo.svg") or an https URL
    logo_text: str | None = default("ui", "logo_text")  # a text mark without a logo image; else its alt text
    footer_text: str | None = default("ui", "footer_text")

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
