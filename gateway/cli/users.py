"""`gateway users ...`: create and manage users; every change is audited and reaches a running
gateway within a second."""

from __future__ import annotations

from typing import Any

import click

from gateway.auth.accounts import Accounts
from gateway.cli.common import (
    CONTEXT,
    Column,
    config_option,
    human_time,
    read_password,
    run_with_accounts,
    table,
    valid_name,
    valid_roles,
)
from gateway.store import Stores

__all__ = ["users"]

_PASSWORD_STDIN = click.option("--password-stdin", is_flag=True,
                               help="Read the password from standard input instead of prompting.")


@click.group(context_settings=CONTEXT)
@config_option
def users() -> None:
    """Create and manage users (changes reach a running gateway at once)."""


@users.command("add")
@click.argument("name")
@click.option("--roles", default="", metavar="A,B", help="Comma-separated roles.")
@_PASSWORD_STDIN
@config_option
@click.pass_context
def users_add(ctx: click.Context, name: str, roles: str, password_stdin: bool) -> None:
    """Create user NAME."""
    valid_name(name)
    role_tuple = valid_roles(roles)
    password = read_password(password_stdin)
    user = run_with_accounts(ctx, lambda accounts, _: accounts.add(name, password, role_tuple),
                             lambda added: ("user.added", {"user": added.name, "roles": list(added.roles)}))
    click.echo(f"added user {user.name} with roles {','.join(user.roles) or '(none)'}")


_USER_COLUMNS = (Column("NAME", 24), Column("STATE", 9), Column("CREATED", 20), Column("ROLES", gap=0))


@users.command("list")
@config_option
@click.pass_context
def users_list(ctx: click.Context) -> None:
    """List users, their roles and state."""

    async def action(_: Accounts, stores: Stores) -> list[Any]:
        return await stores.users.list_users()

    rows = [(user.name, "disabled" if user.disabled else "active", human_time(user.created_at), ",".join(user.roles))
            for user in run_with_accounts(ctx, action)]
    for line in table(_USER_COLUMNS, rows):
        click.echo(line)


@users.command("set-password")
@click.argument("name")
@_PASSWORD_STDIN
@config_option
@click.pass_context
def users_set_password(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Change NAME's password; ends NAME's sessions."""
    password = read_password(password_stdin)
    async def change(accounts: Accounts, _: Stores) -> int:
        return (await accounts.set_password(name, password)).sessions_ended

    ended = run_with_accounts(ctx, change, lambda n: ("user.password_changed", {"user": name, "sessions_ended": n}))
    click.echo(f"password changed for {name}; {ended} session(s) ended")


@users.command("set-roles")
@click.argument("name")
@click.argument("roles")
@config_option
@click.pass_context
def users_set_roles(ctx: click.Context, name: str, roles: str) -> None:
    """Replace NAME's roles with ROLES (comma-separated; "" for none)."""
    role_tuple = valid_roles(roles)
    run_with_accounts(ctx, lambda accounts, _: accounts.set_roles(name, role_tuple),
                      lambda _: ("user.roles_changed", {"user": name, "roles": list(role_tuple)}))
    click.echo(f"roles of {name}: {','.join(role_tuple) or '(none)'}")


@users.command("disable")
@click.argument("name")
@config_option
@click.pass_context
def users_disable(ctx: click.Context, name: str) -> None:
    """Disable NAME: no sign-in, live sessions end."""
    ended = run_with_accounts(ctx, lambda accounts, _: accounts.disable(name),
                              lambda n: ("user.disabled", {"user": name, "sessions_ended": n}))
    click.echo(f"disabled {name}; {ended} session(s) ended")


@users.command("enable")
@click.argument("name")
@config_option
@click.pass_context
def users_enable(ctx: click.Context, name: str) -> None:
    """Enable NAME again."""
    run_with_accounts(ctx, lambda accounts, _: accounts.enable(name), lambda _: ("user.enabled", {"user": name}))
    click.echo(f"enabled {name}")


@users.command("delete")
@click.argument("name")
@config_option
@click.pass_context
def users_delete(ctx: click.Context, name: str) -> None:
    """Delete NAME and end their sessions."""
    run_with_accounts(ctx, lambda accounts, _: accounts.delete(name), lambda _: ("user.deleted", {"user": name}))
    click.echo(f"deleted {name}")


# --- factors

_FACTOR_COLUMNS = (Column("ID", 6), Column("KIND", 8), Column("ADDED", 20), Column("LAST USED", 20), Column("NAME", gap=0))


@users.command("mfa")
@click.argument("name")
@config_option
@click.pass_context
def users_mfa(ctx: click.Context, name: str) -> None:
    """List NAME's second factors and how many recovery codes are left."""
    _, factors, codes = run_with_accounts(ctx, lambda accounts, _: accounts.factors(name))
    rows = [(str(f.id), f.kind, human_time(f.created_at), human_time(f.last_used) if f.last_used else "never", f.name)
            for f in factors]
    for line in table(_FACTOR_COLUMNS, rows):
        click.echo(line)
    click.echo(f"{len(factors)} factor(s); {codes} recovery code(s) left")


@users.command("mfa-reset")
@click.argument("name")
@config_option
@click.pass_context
def users_mfa_reset(ctx: click.Context, name: str) -> None:
    """Remove every second factor and recovery code of NAME (a lost phone); ends NAME's sessions."""
    removed, ended = run_with_accounts(
        ctx, lambda accounts, _: accounts.reset_factors(name),
        lambda r: ("mfa.reset", {"user": name, "factors_removed": r[0], "sessions_ended": r[1]}))
    click.echo(f"removed {removed} factor(s) and the recovery codes of {name}; {ended} session(s) ended")
