"""The commented gateway.toml that `gateway init` writes, rendered from the one table of keys.

Every key appears, with its help: the keys init chooses (or that every operator should look at)
uncommented, the others as "# key = value" at their default (or, without a default, an example),
so uncommenting a line is always a valid setting. Pure functions: tested on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.config.schema import KEYS, SCHEMA, SECTIONS, Key

__all__ = ["SECRET_FILE", "InitOptions", "check_options", "config_text", "toml_string", "toml_value"]

SECRET_FILE = "secret.key"

# A note (help not ending in ".") fits beside its key when the line stays within _WIDTH; a
# sentence, or a longer note, goes on the lines above it.
_INLINE_COLUMN = 30
_WIDTH = 110


@dataclass(frozen=True, slots=True)
class InitOptions:
    """What `gateway init` lets the operator choose; the defaults are the settings' own."""

    upstream: str = SCHEMA[("upstream", "url")].default
    host: str = SCHEMA[("server", "host")].default
    port: int = SCHEMA[("server", "port")].default
    secure_cookie: bool = SCHEMA[("session", "secure_cookie")].default


_OPTION_KEYS = (("--upstream", ("upstream", "url")), ("--host", ("server", "host")), ("--port", ("server", "port")))


def check_options(options: InitOptions) -> list[str]:
    """Problems with the chosen values, each naming its option; the config's own parsers decide."""
    problems = []
    for (option, key), value in zip(_OPTION_KEYS, (options.upstream, options.host, options.port), strict=True):
        try:
            SCHEMA[key].parse(value)
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


def toml_value(value: Any) -> str:
    """A value as written in gateway.toml: a string, a boolean, a whole number or a list of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML spelling for {value!r}")


_HEADER = """\
# gateway.toml, written by `gateway init`.
#
# Relative paths are relative to this file's folder. Every key can be overridden by an environment
# variable GATEWAY_<SECTION>_<KEY> (GATEWAY_SERVER_PORT=9000, GATEWAY_UPSTREAM_URL=...).
# Lines "# key = value" are optional settings shown at their defaults: uncomment to change them.
# `gateway serve` refuses to start on any problem, naming the key; the README explains every key.
"""


def _comment(text: str) -> list[str]:
    return [f"# {line}" for line in text.splitlines()]


def _key_lines(key: Key, chosen: Mapping[tuple[str, str], Any]) -> list[str]:
    name = (key.section, key.name)
    if name in chosen:
        line = f"{key.name} = {toml_value(chosen[name])}"
    else:
        shown = key.default if key.default is not None else key.example
        line = f"{key.name} = {toml_value(shown)}"
        if not key.init:
            line = "# " + line
    if not key.help:
        return [line]
    if not key.help.endswith(".") and "\n" not in key.help and max(len(line) + 2, _INLINE_COLUMN) + 2 + len(key.help) <= _WIDTH:
        return [f"{line:<{_INLINE_COLUMN - 2}}  # {key.help}" if len(line) < _INLINE_COLUMN - 2 else f"{line}  # {key.help}"]
    return [*_comment(key.help), line]


def config_text(options: InitOptions) -> str:
    """The commented gateway.toml: every key of the schema, in its order, under its section."""
    chosen: dict[tuple[str, str], Any] = {
        ("server", "host"): options.host,
        ("server", "port"): options.port,
        ("server", "secret_key_file"): SECRET_FILE,
        ("upstream", "url"): options.upstream,
        ("session", "secure_cookie"): options.secure_cookie,
    }
    lines = [_HEADER.rstrip("\n")]
    for section, help_text in SECTIONS.items():
        lines += ["", f"[{section}]", *_comment(help_text)]
        for key in KEYS:
            if key.section == section:
                lines += _key_lines(key, chosen)
    return "\n".join(lines) + "\n"
