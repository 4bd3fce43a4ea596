"""The ``gateway`` command: serve, and manage users, over the same core the server uses.

Exit codes (the contract): 0 success; 1 operational failure, including a refused change (duplicate
or unknown user, weak password); 2 bad usage or invalid configuration/policy. An operator's mistake
is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

import click

from gateway.auth.accounts import Accounts, check_user_name, parse_roles
from gateway.auth.passwords import MAX_LENGTH, Passwords, WeakPassword
from gateway.config import ConfigError, Settings, load_settings
from gateway.policy import PolicyError
from gateway.store.base import StoreError
from gateway.store.sqlite import SqliteStore

T = TypeVar("T")
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"gateway: {message}", err=True)
    sys.exit(code)


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


def settings_from(ctx: click.Context, *, require_secret: bool = False) -> Settings:
    root = ctx.find_root()
    explicit = (root.obj or {}).get("config")
    try:
        settings = load_settings(explicit, require_secret=require_secret)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"gateway: {problem}", err=True)
        sys.exit(2)
    return settings


def run_with_accounts(ctx: click.Context, action: Callable[[Accounts, SqliteStore], Awaitable[T]]) -> T:
    settings = settings_from(ctx)

    async def run() -> T:
        store = SqliteStore(settings.store.path)
        await store.open()
        try:
            return await action(Accounts(store, Passwords(settings.passwords)), store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (StoreError, WeakPassword) as exc:
        fail(str(exc))


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        data = sys.stdin.buffer.read(MAX_LENGTH * 4 + 2)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            fail("the password on standard input is not valid UTF-8", 2)
        # Exactly as typed: only the line ending that `echo` or a here-string adds is removed.
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if not text:
            fail("no password on standard input", 2)
        return text
    if not sys.stdin.isatty():
        fail("no terminal to prompt for the password on; use --password-stdin", 2)
    value: Any = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password")
    return str(value)


def valid_name(name: str) -> str:
    try:
        return check_user_name(name)
    except ValueError as exc:
        fail(str(exc), 2)


def valid_roles(text: str) -> tuple[str, ...]:
    try:
        return parse_roles(text)
    except ValueError as exc:
        fail(str(exc), 2)


@click.group(context_settings=CONTEXT)
@config_option
@click.version_option(package_name="gateway", prog_name="gateway")
def main() -> None:
    """Authentication gateway: sign-in pages, a role policy and a streaming reverse proxy
    in front of an unmodified web app."""


@main.command()
@config_option
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the gateway (listens on [server] host:port, forwards to [upstream] url)."""
    settings = settings_from(ctx, require_secret=True)
    logging.basicConfig(level=settings.log.level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from gateway.server import serve as run_server

    async def preflight() -> None:
        # Fail here with one line, not later inside the server's start-up with a traceback.
        store = SqliteStore(settings.store.path)
        await store.open()
        await store.close()

    try:
        asyncio.run(preflight())
    except StoreError as exc:
        fail(f"store.path: {exc}")

    try:
        run_server(settings)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(f"gateway: {problem}", err=True)
        sys.exit(2)


@main.group(context_settings=CONTEXT)
@config_option
def users() -> None:
    """Create and manage users (changes reach a running gateway at once)."""


@users.command("add")
@click.argument("name")
@click.option("--roles", default="", metavar="A,B", help="Comma-separated roles.")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
@config_option
@click.pass_context
def users_add(ctx: click.Context, name: str, roles: str, password_stdin: bool) -> None:
    """Create user NAME."""
    valid_name(name)
    role_tuple = valid_roles(roles)
    password = read_password(password_stdin)
    user = run_with_accounts(ctx, lambda accounts, _: accounts.add(name, password, role_tuple))
    click.echo(f"added user {user.name} with roles {','.join(user.roles) or '(none)'}")


@users.command("list")
@config_option
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """List users, their roles and state."""

    async def action(_: Accounts, store: SqliteStore) -> list[Any]:
        return await store.list_users()

    rows = run_with_accounts(ctx, action)
    click.echo(f"{'NAME':<24} {'STATE':<9} {'CREATED':<20} ROLES")
    for user in rows:
        created = datetime.fromtimestamp(user.created_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
        state = "disabled" if user.disabled else "active"
        click.echo(f"{user.name:<24} {state:<9} {created:<20} {','.join(user.roles)}")


@users.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input instead of prompting.")
@config_option
@click.pass_context
def users_set_password(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Change NAME's password; ends NAME's sessions."""
    password = read_password(password_stdin)
    ended = run_with_accounts(ctx, lambda accounts, _: accounts.set_password(name, password))
    click.echo(f"password changed for {name}; {ended} session(s) ended")


@users.command("set-roles")
@click.argument("name")
@click.argument("roles")
@config_option
@click.pass_context
def users_set_roles(ctx: click.Context, name: str, roles: str) -> None:
    """Replace NAME's roles with ROLES (comma-separated; "" for none)."""
    role_tuple = valid_roles(roles)
    run_with_accounts(ctx, lambda accounts, _: accounts.set_roles(name, role_tuple))
    click.echo(f"roles of {name}: {','.join(role_tuple) or '(none)'}")


@users.command("disable")
@click.argument("name")
@config_option
@click.pass_context
def users_disable(ctx: click.Context, name: str) -> None:
    """Disable NAME: no sign-in, live sessions end."""
    ended = run_with_accounts(ctx, lambda accounts, _: accounts.disable(name))
    click.echo(f"disabled {name}; {ended} session(s) ended")


@users.command("enable")
@click.argument("name")
@config_option
@click.pass_context
def users_enable(ctx: click.Context, name: str) -> None:
    """Enable NAME again."""
    run_with_accounts(ctx, lambda accounts, _: accounts.enable(name))
    click.echo(f"enabled {name}")


@users.command("delete")
@click.argument("name")
@config_option
@click.pass_context
def users_delete(ctx: click.Context, name: str) -> None:
    """Delete NAME and end their sessions."""
    run_with_accounts(ctx, lambda accounts, _: accounts.delete(name))
    click.echo(f"deleted {name}")


if __name__ == "__main__":
    main()
