"""`gateway init`: what it writes into a new gateway folder, and how it writes it safely.

The contents are pure functions (tested on their own: the config they produce must load, and so
must every commented example line once uncommented). The writer never overwrites anything: every
file is created with O_EXCL, and whatever one run created is removed again if the run fails, so a
failed init can simply be run again.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import DEFAULT_CONFIG, SCHEMA

SECRET_FILE = "secret.key"
POLICY_FOLDER = "policies"
POLICY_FILE = "main.yaml"
STORE_FOLDER = "var"
STORE_FILE = "gateway.db"
# SQLite's companions of the store file: any of them left over would be read as part of a store.
STORE_SUFFIXES = ("", "-wal", "-shm", "-journal")


DEFAULT_UPSTREAM = "http://127.0.0.1:8081"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class InitOptions:
    upstream: str = DEFAULT_UPSTREAM
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    secure_cookie: bool = True


def check_options(options: InitOptions) -> list[str]:
    """Problems with the chosen values, each naming its option; the config's own parsers decide."""
    problems = []
    for option, key, value in (("--upstream", ("upstream", "url"), options.upstream),
                               ("--host", ("server", "host"), options.host),
                               ("--port", ("server", "port"), options.port)):
        parser, _ = SCHEMA[key]
        try:
            parser(value)
        except ValueError as exc:
            problems.append(f"{option}: {exc}")
    return problems


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and every control character escaped."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def config_text(options: InitOptions) -> str:
    """The commented gateway.toml. A "# key = value" line is an optional setting at its default."""
    secure = "true" if options.secure_cookie else "false"
    return f"""\
# gateway.toml, written by `gateway init`.
#
# Relative paths are relative to this file's folder. Every key can be overridden by an environment
# variable GATEWAY_<SECTION>_<KEY> (GATEWAY_SERVER_PORT=9000, GATEWAY_UPSTREAM_URL=...).
# Lines "# key = value" are optional settings shown at their defaults: uncomment to change them.
# `gateway serve` refuses to start on any problem, naming the key; the README explains every key.

[server]
# Where the gateway listens. "0.0.0.0" only inside a container or behind a firewall.
host = {toml_string(options.host)}
port = {options.port}
# The key that signs the session cookies: created by init, readable only by its owner. Or set
# GATEWAY_SERVER_SECRET_KEY. The key itself is never allowed in this file.
secret_key_file = {toml_string(SECRET_FILE)}
# Addresses/CIDRs of the TLS terminators or load balancers in front of the gateway: only their
# X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host are believed, nobody else's.
trusted_proxies = []
# The origin browsers use (for redirects and the Origin check), when the gateway cannot see it.
# public_url = "https://app.example.com"
# Serve HTTPS itself: a PEM certificate chain and its unencrypted private key (both or neither).
# certfile = "tls/cert.pem"
# keyfile = "tls/key.pem"
# Send Strict-Transport-Security: max-age=31536000 when browsers come over HTTPS (certfile above,
# or an https public_url).
# hsts = true
# Server processes sharing the port: "auto" is one per core (throughput grows with them).
# workers = "auto"
# Largest request body forwarded to the app ("10m", "1g"); 0 = no limit.
# max_body_size = 0
# max_header_size = "64k"     # request line + headers; then 431
# header_timeout = "20s"      # for a request's head to arrive; then 408
# max_clients = 10000         # connections and requests at once per worker; then 503
# hosts = []                  # Host values browsers use ("app.example.com"); others get 400
# body_timeout = "30s"        # a request body may pause this long between chunks; then 408
# body_min_rate = "1k"        # bytes/s a body must average after body_timeout; 0 = no minimum
# send_timeout = "60s"        # a client may take this long to accept a piece of a long answer

[upstream]
# The app behind the gateway: scheme://host:port, without a path.
url = {toml_string(options.upstream)}
# connect_timeout = "5s"      # then 504
# read_timeout = "60s"        # the longest silence from the app; then 504
# write_timeout = "60s"
# pool_timeout = "5s"         # waiting for a free connection; then 503
# max_connections = 100
# preserve_host = true        # the app gets the browser's Host; false: the app's own address
# transport = "aiohttp"       # or "httpx"
# websocket_max_message = "16MiB"   # largest WebSocket message, both ways
# max_connections_per_client = 32   # upstream requests one client address may have at once; then 429
# websocket_memory = "256MiB"       # WebSocket messages being relayed at once, per worker; then 1013

[session]
# true: the cookie is Secure with the __Host- prefix, so browsers send it only over HTTPS (and to
# http://127.0.0.1 or localhost). false only for plain-http trials elsewhere: the gateway warns.
secure_cookie = {secure}
idle_timeout = "30m"          # a session unused this long ends
absolute_timeout = "12h"      # a session ends this long after sign-in, however active
# remember_lifetime = "12h"   # the cookie's lifetime with "Keep me signed in" (default: absolute_timeout)
# bind = "user_agent"         # "none", "user_agent" or "client": a session seen from elsewhere ends
# cache_ttl = "750ms"         # a session row may be answered from memory this long (0 to 1s)

[store]
# Users, sessions and the audit trail (SQLite). Keep it on persistent storage; back it up.
path = {toml_string(STORE_FOLDER + "/" + STORE_FILE)}

[policy]
# Every *.yaml file in this folder; edits take effect within 2 seconds. Check: gateway policy check
dir = {toml_string(POLICY_FOLDER)}
# case_insensitive = false    # for apps that ignore case (IIS)
# allow_path_params = false   # accept ;jsessionid= path parameters (the decision ignores them)

[headers]
# The identity headers the app receives; clients' copies are always removed.
# user = "X-Forwarded-User"
# roles = "X-Forwarded-Roles"

[proxy]
# Client headers removed before forwarding, beside the built-in list of other gateways' identity
# headers (X-Auth-Request-*, Remote-User, ...; the README lists it). A trailing * makes a prefix.
# strip_headers = []          # for example ["X-Custom-User", "X-Acme-*"]

[passwords]
# argon2id parameters; stored hashes are upgraded at the next sign-in when these change.
# time_cost = 3
# memory_cost = 65536         # KiB per verification
# parallelism = 4
# max_concurrent = 2          # verifications at once

[log]
# Everything goes to standard error, one line each; audit lines are always JSON.
# level = "info"              # debug, info, warning, error
# format = "json"             # or "text"
# access = true               # one access-log line per request (never the query string or a cookie)

[metrics]
# Who may read /.gateway/metrics (Prometheus): client addresses or CIDRs; everyone else gets 404.
# allow = ["127.0.0.1/32", "::1/128"]

[ui]
# What the sign-in and error pages show. Text is shown as written (never as HTML).
# product_name = "Gateway"    # at the top of every page and in the browser tab
# title = "Sign in"           # the sign-in page's heading
# logo_url = "/static/logo.png"   # a path on this site or an https:// URL
# logo_text = "ACME"          # a text badge without a logo, else the logo's alt text
# footer_text = "Questions? Ask the IT desk."
"""


def policy_text() -> str:
    return """\
# An example policy, written by `gateway init`. Every *.yaml file in this folder is read.
# The MOST SPECIFIC matching pattern decides, whatever the file or the order of the rules; a path
# no rule matches is denied. Check with `gateway policy check`; see how a request is decided with
# `gateway policy explain GET /admin/ --user admin`.
rules:
  - name: "static files: anyone, no sign-in"
    paths: ["/static/**", "/favicon.ico", "/robots.txt"]
    allow: anyone

  - name: "everything else: any signed-in user"
    paths: ["/**"]
    allow: authenticated

  - name: "administration: admins only"
    paths: ["/admin*/**"]      # admin* also takes /admin.json, /admin.csv...: apps serve /admin there too
    roles: [admin]
    # fresh: 15m               # optional: ask for the password again after 15 minutes

  # More kinds of rule:
  # - paths: ["/reports/**"]
  #   methods: [GET, HEAD]     # this rule covers only these methods; others are refused
  #   roles: [analyst, admin]
  # - paths: ["/internal/**"]
  #   deny: true               # nobody, whatever their roles
"""


def new_secret_key() -> str:
    return secrets.token_urlsafe(48)


def config_file(directory: Path) -> Path:
    return directory / DEFAULT_CONFIG


def store_files(store: Path) -> list[Path]:
    """The store and SQLite's companion files beside it."""
    return [store.with_name(store.name + suffix) for suffix in STORE_SUFFIXES]


def planned_files(directory: Path) -> list[Path]:
    return [
        config_file(directory),
        directory / SECRET_FILE,
        directory / POLICY_FOLDER / POLICY_FILE,
        *store_files(directory / STORE_FOLDER / STORE_FILE),
    ]


def first_clash(directory: Path) -> Path | None:
    """A file init would write that exists already, or a policy file it would be mixed with."""
    for path in planned_files(directory):
        if path.exists() or path.is_symlink():
            return path
    policies = directory / POLICY_FOLDER
    if policies.is_dir():
        return next(iter(sorted(policies.glob("*.yaml"))), None)
    return None


@dataclass
class Writer:
    """Creates files and folders, never over anything; ``undo`` removes exactly what it created."""

    files: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)

    def folder(self, path: Path, mode: int = 0o755) -> None:
        missing = [p for p in (path, *path.parents) if not p.exists()]
        for item in reversed(missing):
            item.mkdir(mode)
            self.folders.append(item)

    def file(self, path: Path, text: str, mode: int = 0o644) -> None:
        # O_EXCL: an existing file (or a symlink planted where the file goes) is an error, never
        # written through. The mode is given at creation, so the file is never briefly wider.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
        self.files.append(path)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            # The umask may only narrow the mode; set it exactly (a 0600 key stays owner-readable).
            os.fchmod(handle.fileno(), mode)
            handle.write(text)

    def adopt(self, paths: list[Path]) -> None:
        """Files another component created (SQLite's) that ``undo`` must remove too."""
        self.files.extend(paths)

    def undo(self) -> None:
        for path in reversed(self.files):
            # Best effort, never raising: the error that made us undo is the one to report.
            with contextlib.suppress(OSError):
                path.unlink()
        for folder in reversed(self.folders):
            with contextlib.suppress(OSError):  # not empty: something else is in it now, leave it
                folder.rmdir()
        self.files.clear()
        self.folders.clear()


def write_files(directory: Path, options: InitOptions, writer: Writer) -> None:
    """gateway.toml, the secret key (0600) and the example policy; the store's folder (0700)."""
    writer.folder(directory)
    writer.file(config_file(directory), config_text(options))
    writer.file(directory / SECRET_FILE, new_secret_key() + "\n", mode=0o600)
    writer.folder(directory / POLICY_FOLDER)
    writer.file(directory / POLICY_FOLDER / POLICY_FILE, policy_text())
    # The store holds password hashes: its folder is for the gateway's user alone.
    writer.folder(directory / STORE_FOLDER, mode=0o700)
