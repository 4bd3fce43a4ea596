"""gateway.toml + GATEWAY_<SECTION>_<KEY> environment overrides -> one frozen, validated Settings.

Every problem is collected and reported together (one line each, naming the file and key), so an
operator fixes a config in one round trip. Which keys exist, how each is parsed and what it is when
not given all come from config/schema.py. No Quart import here: the CLI and tests use this alone.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar, cast

from gateway.config.credentials import SECRET_ENV, read_secret_key, tls_files
from gateway.config.parsers import SQLITE_URL
from gateway.config.schema import FORBIDDEN_IN_FILE, SCHEMA
from gateway.config.settings import (
    HeaderSettings,
    LogSettings,
    MetricsSettings,
    PasswordSettings,
    PolicySettings,
    ProxySettings,
    ServerSettings,
    SessionSettings,
    Settings,
    StoreSettings,
    UiSettings,
    UpstreamSettings,
)

__all__ = ["CONFIG_ENV", "DEFAULT_CONFIG", "ConfigError", "config_path", "env_key", "load_settings"]

CONFIG_ENV = "GATEWAY_CONFIG"
DEFAULT_CONFIG = "gateway.toml"

T = TypeVar("T")


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def config_path(explicit: str | Path | None, env: Mapping[str, str]) -> Path:
    """--config FILE, else $GATEWAY_CONFIG, else ./gateway.toml."""
    return Path(explicit or env.get(CONFIG_ENV) or DEFAULT_CONFIG)


def env_key(name: str) -> tuple[str, str] | None:
    """GATEWAY_UPSTREAM_CONNECT_TIMEOUT -> ("upstream", "connect_timeout"); sections have no '_'."""
    rest = name[len("GATEWAY_") :].lower()
    section, _, key = rest.partition("_")
    return (section, key) if (section, key) in SCHEMA else None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{path}: config file not found (give --config FILE or set {CONFIG_ENV})"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


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
    raw = _read_file(path)
    problems: list[str] = []

    values: dict[tuple[str, str], Any] = {name: key.default for name, key in SCHEMA.items()}
    origin: dict[tuple[str, str], str] = {name: f"{path}: {name[0]}.{name[1]}" for name in SCHEMA}
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

    for variable, value in env.items():
        if not variable.startswith("GATEWAY_") or variable in {CONFIG_ENV, SECRET_ENV}:
            continue
        found = env_key(variable)
        if found is None:
            problems.append(f"environment: {variable}: unknown setting")
        else:
            values[found] = value
            origin[found] = f"environment: {variable}"

    parsed: dict[tuple[str, str], Any] = {}
    for name, key in SCHEMA.items():
        try:
            parsed[name] = key.unset if values[name] is None else key.parse(values[name])
        except ValueError as exc:
            problems.append(f"{origin[name]}: {exc}")

    base = path.resolve().parent
    secret, secret_problems = read_secret_key(parsed.get(("server", "secret_key_file")), env, base, path, require_secret)
    problems.extend(secret_problems)
    certfile, keyfile, tls_problems = tls_files(
        parsed.get(("server", "certfile")), parsed.get(("server", "keyfile")), base, path, check=require_secret
    )
    problems.extend(tls_problems)
    problems.extend(_cross_checks(parsed, origin, path))
    if problems:
        raise ConfigError(problems)

    warnings: list[str] = []
    if parsed[("session", "secure_cookie")] is False:
        warnings.append(
            f"{path}: session.secure_cookie is false: the session cookie is sent over plain HTTP; use only for local testing"
        )

    def section_of(cls: type[T], name: str, **given: Any) -> T:
        """A section's settings: each field from the key of the same name, unless given here."""
        keys = {f.name for f in fields(cast(Any, cls)) if f.init and (name, f.name) in parsed} - given.keys()
        return cls(**{key: parsed[(name, key)] for key in keys}, **given)

    store_path = base / parsed[("store", "path")]
    return Settings(
        config_file=path.resolve(),
        server=section_of(ServerSettings, "server", secret_key=secret, certfile=certfile, keyfile=keyfile),
        upstream=section_of(UpstreamSettings, "upstream"),
        session=section_of(SessionSettings, "session"),
        store=StoreSettings(path=store_path, users=_store_url(parsed[("store", "users")], base, store_path),
                            sessions=_store_url(parsed[("store", "sessions")], base, store_path)),
        policy=section_of(PolicySettings, "policy", dir=base / parsed[("policy", "dir")]),
        headers=section_of(HeaderSettings, "headers"),
        passwords=section_of(PasswordSettings, "passwords"),
        log=section_of(LogSettings, "log"),
        warnings=tuple(warnings),
        ui=section_of(UiSettings, "ui"),
        metrics=section_of(MetricsSettings, "metrics"),
        proxy=section_of(ProxySettings, "proxy"),
    )


def _store_url(url: str | None, base: Path, store_path: Path) -> str:
    """A checked store URL with a relative sqlite:/// path made absolute; not set: the store.path file."""
    if url is None:
        return SQLITE_URL + str(store_path)
    if url.startswith(SQLITE_URL):
        return SQLITE_URL + str(base / url[len(SQLITE_URL):])
    return url


def _cross_checks(parsed: Mapping[tuple[str, str], Any], origin: Mapping[tuple[str, str], str], path: Path) -> list[str]:
    """Problems between two keys that each parsed on their own."""
    problems = []
    idle, absolute = parsed.get(("session", "idle_timeout")), parsed.get(("session", "absolute_timeout"))
    if isinstance(idle, int) and isinstance(absolute, int) and idle > absolute:
        problems.append(f"{path}: session.idle_timeout: longer than session.absolute_timeout")
    largest, budget = parsed.get(("upstream", "websocket_max_message")), parsed.get(("upstream", "websocket_memory"))
    if isinstance(largest, int) and isinstance(budget, int) and budget < 2 * largest:
        # One socket may relay a message of the largest size each way at once: a smaller budget
        # would close it with 1013 on an idle gateway.
        where = origin[("upstream", "websocket_memory")]
        problems.append(f"{where}: {budget} bytes is less than twice upstream.websocket_max_message ({largest} bytes)")
    return problems
