"""`gateway sessions list|revoke`: the live sessions; a revocation reaches a running gateway within
a second."""

from __future__ import annotations

from typing import Any

import click

from gateway.auth.accounts import Accounts
from gateway.auth.sessions import SessionManager, printable, short_id
from gateway.cli.common import CONTEXT, Column, config_option, fail, human_time, run_with_accounts, settings_from, table
from gateway.store import SignedIn, StoreError, Stores

__all__ = ["sessions"]


@click.group(context_settings=CONTEXT)
@config_option
def sessions() -> None:
    """List and revoke live sessions (revocation reaches a running gateway at once)."""


_SESSION_COLUMNS = (Column("ID", 12, gap=2), Column("USER", 20), Column("CREATED (UTC)", 19, gap=2),
                    Column("LAST SEEN (UTC)", 19, gap=2), Column("CLIENT", 15, gap=2), Column("USER AGENT", gap=0))


@sessions.command("list")
@click.option("--user", "user_name", metavar="NAME", help="Only this user's sessions.")
@config_option
@click.pass_context
def sessions_list(ctx: click.Context, user_name: str | None) -> None:
    """List live sessions: user, created, last seen, client address, user agent, short id."""

    settings = settings_from(ctx)

    async def action(accounts: Accounts, stores: Stores) -> list[SignedIn]:
        manager = SessionManager(stores, settings.session)
        if user_name is None:
            return await manager.live_sessions()
        return await manager.live_sessions((await accounts.require(user_name)).id)

    rows = [(short_id(row.session.id_hash), row.user.name, human_time(row.session.created_at),
             human_time(row.session.last_seen), printable(row.session.client), printable(row.session.user_agent[:60]))
            for row in run_with_accounts(ctx, action)]
    for line in table(_SESSION_COLUMNS, rows):
        click.echo(line)


@sessions.command("revoke")
@click.argument("session_id", required=False, metavar="ID")
@click.option("--user", "user_name", metavar="NAME", help="End every session of this user.")
@click.option("--all", "everything", is_flag=True, help="End every session of every user.")
@config_option
@click.pass_context
def sessions_revoke(ctx: click.Context, session_id: str | None, user_name: str | None, everything: bool) -> None:
    """End sessions: one by its ID (as `sessions list` shows it), all of a --user, or --all."""
    if sum(bool(x) for x in (session_id, user_name, everything)) != 1:
        fail("give exactly one of ID, --user NAME or --all", 2)

    async def action(accounts: Accounts, stores: Stores) -> int:
        if everything:
            return await stores.sessions.delete_all_sessions()
        if user_name is not None:
            return await stores.sessions.delete_user_sessions((await accounts.require(user_name)).id)
        assert session_id is not None
        found = await stores.sessions.find_sessions(session_id.lower()) if len(session_id) >= 6 else []
        if len(found) != 1:
            raise StoreError(f"no session with id {session_id!r}" if not found else f"id {session_id!r} is ambiguous")
        await stores.sessions.delete_session(found[0].id_hash)
        user = await stores.users.get_user_by_id(found[0].user_id)
        if user is not None:
            owner.append(user.name)
        return 1

    owner: list[str] = []
    scope: dict[str, Any] = {"all": True} if everything else {"user": user_name} if user_name else {"session": session_id}
    ended = run_with_accounts(ctx, action, lambda n: ("session.revoked", {**scope, **({"user": owner[0]} if owner else {}),
                                                                          "count": n}))
    click.echo(f"{ended} session(s) ended")
