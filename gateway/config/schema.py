"""The one table of settings: every key's section, name, parser, default and help, declared once.

Everything else reads this table: the loader (which keys exist, how each is parsed, what it is when
not given), the settings dataclasses (their field defaults are ``default(section, name)``),
`gateway init`'s commented gateway.toml (config/template.py), and the tests that hold the README's
table of keys to it. A default is written here as an operator would write it in gateway.toml
("30m", "64k", "auto"); ``Key.value`` is what it parses to.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config import parsers as p

__all__ = [
    "BINDINGS",
    "FORBIDDEN_IN_FILE",
    "KEYS",
    "LOG_FORMATS",
    "SCHEMA",
    "SECTIONS",
    "Key",
    "default",
]

BINDINGS = ("none", "user_agent", "client")
LOG_FORMATS = ("json", "text")


@dataclass(frozen=True, slots=True)
class Key:
    """One setting: ``[section] name``, or the environment variable ``GATEWAY_<SECTION>_<NAME>``."""

    section: str
    name: str
    parse: p.Parser
    default: Any  # as written in gateway.toml; None: not set
    help: str  # shown by `gateway init` beside the key
    unset: Any = None  # the value when there is no default and nothing is given
    example: Any = None  # what `gateway init` shows for a key without a default
    init: bool = False  # `gateway init` writes the key uncommented (at its default unless chosen)

    @property
    def value(self) -> Any:
        """The default, parsed: what the setting is when neither the file nor the environment sets it."""
        return self.unset if self.default is None else self.parse(self.default)

    @property
    def env(self) -> str:
        return f"GATEWAY_{self.section.upper()}_{self.name.upper()}"


# The help of each section, shown by `gateway init` under the section's header.
SECTIONS: dict[str, str] = {
    "server": "",
    "upstream": "",
    "session": "",
    "store": "",
    "policy": "",
    "headers": "The identity headers the app receives; clients' copies are always removed.",
    "proxy": "",
    "passwords": "argon2id parameters; stored hashes are upgraded at the next sign-in when these change.",
    "log": "Everything goes to standard error, one line each; audit lines are always JSON.",
    "metrics": "",
    "ui": "What the sign-in and error pages show. Text is shown as written (never as HTML).",
}

KEYS: tuple[Key, ...] = (
    Key("server", "host", p.string, "127.0.0.1", init=True,
        help='Where the gateway listens. "0.0.0.0" only inside a container or behind a firewall.'),
    Key("server", "port", p.int_in(1, 65535), 8080, init=True, help=""),
    Key("server", "secret_key_file", p.optional_string, None, init=True,
        help="The key that signs the session cookies: created by init, readable only by its owner. Or set\n"
             "GATEWAY_SERVER_SECRET_KEY. The key itself is never allowed in this file."),
    Key("server", "trusted_proxies", p.networks, [], init=True,
        help="Addresses/CIDRs of the TLS terminators or load balancers in front of the gateway: only their\n"
             "X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host are believed, nobody else's."),
    Key("server", "public_url", p.optional_origin, None, example="https://app.example.com",
        help="The origin browsers use (for redirects and the Origin check), when the gateway cannot see it."),
    Key("server", "workers", p.workers, "auto",
        help='Server processes sharing the port: "auto" is one per core (throughput grows with them).'),
    Key("server", "certfile", p.optional_string, None, example="tls/cert.pem",
        help="Serve HTTPS itself: a PEM certificate chain and its unencrypted private key (both or neither)."),
    Key("server", "keyfile", p.optional_string, None, example="tls/key.pem", help=""),
    Key("server", "hsts", p.boolean, True,
        help="Send Strict-Transport-Security: max-age=31536000 when browsers come over HTTPS (certfile above,\n"
             "or an https public_url)."),
    Key("server", "max_body_size", p.size_in(0, 2**62), 0,
        help='Largest request body forwarded to the app ("10m", "1g"); 0 = no limit.'),
    Key("server", "max_header_size", p.size_in(1024, 1024**2), "64k", help="request line + headers; then 431"),
    Key("server", "header_timeout", p.seconds, "20s", help="for a request's head to arrive; then 408"),
    Key("server", "max_clients", p.int_in(1, 1_000_000), 10_000,
        help="connections and requests at once per worker; then 503"),
    Key("server", "hosts", p.hosts, [], help='Host values browsers use ("app.example.com"); others get 400'),
    Key("server", "body_timeout", p.seconds, "30s", help="a request body may pause this long between chunks; then 408"),
    Key("server", "body_min_rate", p.size_in(0, 1024**3), "1k",
        help="bytes/s a body must average after body_timeout; 0 = no minimum"),
    Key("server", "send_timeout", p.seconds, "60s",
        help="a client may take this long to accept a piece of a long answer"),

    Key("upstream", "url", p.origin, "http://127.0.0.1:8081", init=True,
        help="The app behind the gateway: scheme://host:port, without a path."),
    Key("upstream", "connect_timeout", p.seconds, "5s", help="then 504"),
    Key("upstream", "read_timeout", p.seconds, "60s", help="the longest silence from the app; then 504"),
    Key("upstream", "write_timeout", p.seconds, "60s", help=""),
    Key("upstream", "pool_timeout", p.seconds, "5s", help="waiting for a free connection; then 503"),
    Key("upstream", "max_connections", p.int_in(1, 10_000), 100, help=""),
    Key("upstream", "preserve_host", p.boolean, True,
        help="the app gets the browser's Host; false: the app's own address"),
    Key("upstream", "transport", p.choice("aiohttp", "httpx"), "aiohttp", help='or "httpx"'),
    Key("upstream", "websocket_max_message", p.size_in(1024, 1024**3), "16MiB",
        help="largest WebSocket message, both ways"),
    Key("upstream", "max_connections_per_client", p.int_in(0, 10_000), 32,
        help="upstream requests one client address may have at once; then 429"),
    Key("upstream", "websocket_memory", p.size_in(2 * 1024, 64 * 1024**3), "256MiB",
        help="WebSocket messages being relayed at once, per worker; then 1013"),

    Key("session", "secure_cookie", p.boolean, True, init=True,
        help="true: the cookie is Secure with the __Host- prefix, so browsers send it only over HTTPS (and to\n"
             "http://127.0.0.1 or localhost). false only for plain-http trials elsewhere: the gateway warns."),
    Key("session", "idle_timeout", p.duration, "30m", init=True, help="a session unused this long ends"),
    Key("session", "absolute_timeout", p.duration, "12h", init=True,
        help="a session ends this long after sign-in, however active"),
    Key("session", "remember_lifetime", p.duration, None, unset=0, example="12h",
        help='the cookie\'s lifetime with "Keep me signed in" (default: absolute_timeout)'),
    Key("session", "bind", p.choice(*BINDINGS), "user_agent",
        help='"none", "user_agent" or "client": a session seen from elsewhere ends'),
    Key("session", "cache_ttl", p.cache_ttl, "750ms", help="a session row may be answered from memory this long (0 to 1s)"),

    Key("store", "path", p.string, "var/gateway.db", init=True,
        help="Users, sessions and the audit trail (SQLite). Keep it on persistent storage; back it up."),
    Key("store", "users", p.user_store_url, None, example="postgresql://gateway@db.internal/gateway",
        help='Where users and the audit trail live, as a URL (default: the file at path above):\n'
             'sqlite:///PATH (relative to this file\'s folder; sqlite:////PATH is absolute) or\n'
             'postgresql://USER:PASSWORD@HOST:PORT/DATABASE to share them between machines.'),
    Key("store", "sessions", p.session_store_url, None, example="redis://redis.internal:6379/0",
        help='Where sessions and sign-in throttle counters live (default: the file at path above):\n'
             'sqlite:///PATH, or redis://[:PASSWORD@]HOST:PORT/DB[?prefix=gateway:] to share them.'),

    Key("policy", "dir", p.string, "policies", init=True,
        help="Every *.yaml file in this folder; edits take effect within 2 seconds. Check: gateway policy check"),
    Key("policy", "case_insensitive", p.boolean, False, help="for apps that ignore case (IIS)"),
    Key("policy", "allow_path_params", p.boolean, False,
        help="accept ;jsessionid= path parameters (the decision ignores them)"),

    Key("headers", "user", p.header_name, "X-Forwarded-User", help=""),
    Key("headers", "roles", p.header_name, "X-Forwarded-Roles", help=""),

    Key("proxy", "strip_headers", p.strip_headers, [],
        help="Client headers removed before forwarding, beside the built-in list of other gateways' identity\n"
             "headers (X-Auth-Request-*, Remote-User, ...; the README lists it). A trailing * makes a prefix,\n"
             'for example ["X-Custom-User", "X-Acme-*"].'),

    Key("passwords", "time_cost", p.int_in(1, 100), 3, help=""),
    Key("passwords", "memory_cost", p.int_in(8, 4 * 1024 * 1024), 65536, help="KiB per verification"),
    Key("passwords", "parallelism", p.int_in(1, 64), 4, help=""),
    Key("passwords", "max_concurrent", p.int_in(1, 64), 2, help="verifications at once"),

    Key("log", "level", p.level, "info", help="debug, info, warning, error"),
    Key("log", "format", p.choice(*LOG_FORMATS), "json", help='or "text"'),
    Key("log", "access", p.boolean, True,
        help="one access-log line per request (never the query string or a cookie)"),

    Key("metrics", "allow", p.networks, ["127.0.0.1/32", "::1/128"],
        help="Who may read /.gateway/metrics (Prometheus): client addresses or CIDRs; everyone else gets 404."),

    Key("ui", "product_name", p.text(64), "Gateway", help="at the top of every page and in the browser tab"),
    Key("ui", "title", p.text(100), "Sign in", help="the sign-in page's heading"),
    Key("ui", "logo_url", p.logo_url, None, example="/static/logo.png", help="a path on this site or an https:// URL"),
    Key("ui", "logo_text", p.optional_text(64), None, example="ACME",
        help="a text badge without a logo, else the logo's alt text"),
    Key("ui", "footer_text", p.optional_text(300), None, example="Questions? Ask the IT desk.", help=""),
)

SCHEMA: Mapping[tuple[str, str], Key] = {(key.section, key.name): key for key in KEYS}

# Keys that may never be written in the file itself.
FORBIDDEN_IN_FILE = {("server", "secret_key"): "put the key in secret_key_file or the GATEWAY_SERVER_SECRET_KEY variable"}


def default(section: str, name: str) -> Any:
    """The parsed default of ``[section] name``: what a settings dataclass field defaults to."""
    return SCHEMA[(section, name)].value
