"""What every `gateway` command shares: --config, the settings, the store around a command,
password prompts, human tables, and the one way an operator's mistake ends a command.

Exit codes (the contract): 0 success; 1 operational failure, including a refused change (duplicate
or unknown user, weak password); 2 bad usage or invalid configuration/policy. An operator's mistake
is one line on stderr per problem, never a traceback.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import click

from gateway.auth.accounts import Accounts, check_user_name, parse_roles
from gateway.auth.passwords import MAX_LENGTH, Passwords, WeakPassword
from gateway.clock import format_time
from gateway.config import ConfigError, Settings, load_settings
from gateway.observe.audit import Audit, configure_audit_log
from gateway.store import StoreError, Stores, open_stores

__all__ = [
    "CONTEXT",
    "Column",
    "config_option",
    "exit_with_problems",
    "explicit_config",
    "fail",
    "human_time",
    "opened_stores",
    "read_password",
    "run_with_accounts",
    "settings_from",
    "table",
    "valid_name",
    "valid_roles",
    "with_accounts",
]

T = TypeVar("T")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
USAGE = 2  # bad usage, invalid configuration or policy


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr, then exit ``code`` (1: a refused or failed operation; 2: bad usage)."""
    click.echo(f"gateway: {message}", err=True)
    sys.exit(code)


def exit_with_problems(problems: Iterable[object], *, then: str | None = None) -> NoReturn:
    """Every problem (a bad config, a bad policy, bad options), one line each, then exit 2."""
    for problem in problems:
        click.echo(f"gateway: {problem}", err=True)
    if then is not None:
        click.echo(f"gateway: {then}", err=True)
    sys.exit(USAGE)


def _remember_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    # --config is accepted before or after the subcommand; the innermost one given wins.
    if value is not None:
        ctx.ensure_object(dict)
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj["config"] = value


config_option = click.option(
    "--config", "-c", metavar="FILE", expose_value=False, is_eager=True, callback=_remember_config,
    help="Config file (default: $GATEWAY_CONFIG, else ./gateway.toml).",
)


def explicit_config(ctx: click.Context) -> str | None:
    """The --config FILE given anywhere on the command line, if any."""
    config: str | None = (ctx.find_root().obj or {}).get("config")
    return config


def settings_from(ctx: click.Context, *, require_secret: bool = False) -> Settings:
    try:
        return load_settings(explicit_config(ctx), require_secret=require_secret)
    except ConfigError as exc:
        exit_with_problems(exc.problems)


@asynccontextmanager
async def opened_stores(settings: Settings) -> AsyncIterator[Stores]:
    """The stores the settings name, open for the length of one command (creating and migrating
    them if needed). A change made through them is in force in a running gateway when they return."""
    stores = open_stores(settings.store)
    await stores.open()
    try:
        yield stores
    finally:
        await stores.close()


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers): the audit still says "cli"
        return "unknown"


async def with_accounts(
    settings: Settings,
    action: Callable[[Accounts, Stores], Awaitable[T]],
    audit: Callable[[T], tuple[str, dict[str, Any]]] | None = None,
) -> T:
    """Run ``action`` against the open stores; on success record the audit event ``audit(result)`` names."""
    async with opened_stores(settings) as stores:
        result = await action(Accounts(stores, Passwords(settings.passwords)), stores)
        if audit is not None:
            event, fields = audit(result)
            configure_audit_log()  # the same JSON line as the gateway's, on this command's stderr
            trail = Audit(stores.audit)
            trail.record(event, by="cli", operator=_operator(), **fields)
            await trail.flush()
        return result


def run_with_accounts(
    ctx: click.Context,
    action: Callable[[Accounts, Stores], Awaitable[T]],
    audit: Callable[[T], tuple[str, dict[str, Any]]] | None = None,
) -> T:
    """``with_accounts`` for a command: a refused change or a store failure is one line and exit 1."""
    settings = settings_from(ctx)
    try:
        return asyncio.run(with_accounts(settings, action, audit))
    except (StoreError, WeakPassword) as exc:
        fail(str(exc))


def read_password(from_stdin: bool) -> str:
    """The password from standard input (exactly as given, less one line ending), or asked twice."""
    if from_stdin:
        data = sys.stdin.buffer.read(MAX_LENGTH * 4 + 2)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            fail("the password on standard input is not valid UTF-8", USAGE)
        # Exactly as typed: only the line ending that `echo` or a here-string adds is removed.
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if not text:
            fail("no password on standard input", USAGE)
        return text
    if not sys.stdin.isatty():
        fail("no terminal to prompt for the password on; use --password-stdin", USAGE)
    value: Any = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")
    return str(value)


def valid_name(name: str) -> str:
    try:
        return check_user_name(name)
    except ValueError as exc:
        fail(str(exc), USAGE)


def valid_roles(text: str) -> tuple[str, ...]:
    try:
        return parse_roles(text)
    except ValueError as exc:
        fail(str(exc), USAGE)


def human_time(timestamp: float) -> str:
    """A time in a human table: the one timestamp shape (clock.format_time) to the second, UTC."""
    return format_time(timestamp)[:19].replace("T", " ")


@dataclass(frozen=True, slots=True)
class Column:
    """A table column: cells padded to ``width``, then ``gap`` spaces (the last column: neither)."""

    title: str
    width: int = 0
    gap: int = 1


def table(columns: Sequence[Column], rows: Iterable[Sequence[str]], *, header: bool = True) -> list[str]:
    """The lines of a plain-text table, the titles first unless ``header`` is false."""

    def line(cells: Sequence[str]) -> str:
        return "".join(f"{cell:<{column.width}}{' ' * column.gap}" for column, cell in zip(columns, cells, strict=True))

    titles = [[column.title for column in columns]] if header else []
    return [line(cells) for cells in (*titles, *rows)]
