"""`gateway audit`: read the audit trail, as a table or as the JSON lines the gateway logs."""

from __future__ import annotations

import json
import time

import click

from gateway.auth.accounts import Accounts
from gateway.auth.sessions import printable
from gateway.cli.common import Column, config_option, fail, human_time, run_with_accounts, table
from gateway.durations import parse_duration
from gateway.observe.audit import audit_line
from gateway.store import Stores
from gateway.store.base import AuditRecord

__all__ = ["audit"]

_AUDIT_COLUMNS = (Column("TIME", 19, gap=2), Column("EVENT", 22), Column("USER", 16), Column("CLIENT", 15),
                  Column("DETAIL", gap=0))


@click.command("audit")
@click.option("--user", "user_name", metavar="NAME", help="Only events about this user.")
@click.option("--since", metavar="DURATION", help="Only events in this recent period, e.g. 1h, 30m, 7d.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--limit", default=1000, show_default=True, help="At most this many (the most recent).")
@config_option
@click.pass_context
def audit(ctx: click.Context, user_name: str | None, since: str | None, as_json: bool, limit: int) -> None:
    """Show the audit trail: sign-ins, sign-outs, revocations, denials, policy reloads, user changes."""
    start = None
    if since is not None:
        try:
            start = time.time() - parse_duration(since)
        except ValueError as exc:
            fail(f"--since: {exc}", 2)

    async def action(_: Accounts, stores: Stores) -> list[AuditRecord]:
        return await stores.audit.list_audit(user=user_name, since=start, limit=limit)

    for record in run_with_accounts(ctx, action):
        if as_json:
            click.echo(audit_line(record))
        else:
            detail = " ".join(f"{k}={v}" for k, v in json.loads(record.detail).items())
            [line] = table(_AUDIT_COLUMNS, [(human_time(record.time), record.event, record.user or "-",
                                             record.client or "-", detail)], header=False)
            click.echo(printable(line))
