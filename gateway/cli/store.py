"""`gateway store copy`: move users and the audit trail between user stores (SQLite <-> PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import click

from gateway.cli.common import CONTEXT, fail
from gateway.config.parsers import redacted_url, user_store_url
from gateway.store import AuditRecord, StoreError, open_user_store
from gateway.store.copy import Copied, TargetNotEmpty, copy_users_and_audit

__all__ = ["store"]

SQLITE = "sqlite:///"


@click.group(context_settings=CONTEXT)
def store() -> None:
    """Move the gateway's state between stores."""


def _checked(option: str, url: str, *, must_exist: bool) -> str:
    try:
        checked = user_store_url(url)
    except ValueError as exc:
        fail(f"{option}: {exc}", 2)
    if checked is None:
        fail(f"{option}: give a store URL", 2)
    if not checked.startswith(SQLITE):
        return checked
    # Relative to here, as the help says; shown absolute, so nobody mistakes sqlite:///etc/x for /etc/x.
    path = Path(checked[len(SQLITE):]).absolute()
    if must_exist and not path.is_file():
        fail(f"{option}: {path}: no such file", 2)
    return SQLITE + str(path)


@store.command("copy", context_settings=CONTEXT)
@click.option("--from", "source_url", required=True, metavar="URL",
              help="The user store to read: sqlite:///PATH (relative to here) or postgresql://...")
@click.option("--to", "target_url", required=True, metavar="URL", help="The user store to fill; it must be empty.")
def store_copy(source_url: str, target_url: str) -> None:
    """Copy users (password hashes as they are) and the audit trail from one user store to another:
    the embedded SQLite file to PostgreSQL when moving to several machines, or back. Sessions are
    not copied (users sign in again). Refuses a target that already holds users or audit records.
    Stop the gateways that write to the source first, so nothing is written during the copy."""
    source_url = _checked("--from", source_url, must_exist=True)
    target_url = _checked("--to", target_url, must_exist=False)
    if source_url == target_url:
        fail("--from and --to are the same store", 2)

    async def run() -> Copied:
        source, target = open_user_store(source_url), open_user_store(target_url)
        await source.open()
        try:
            await target.open()
            try:
                copied = await copy_users_and_audit(source, target)
                detail = {"from": redacted_url(source_url), "users": copied.users, "audit": copied.audit}
                await target.add_audit([AuditRecord(time.time(), "store.copied", None, "cli", json.dumps(detail))])
                return copied
            finally:
                await target.close()
        finally:
            await source.close()

    try:
        copied = asyncio.run(run())
    except TargetNotEmpty as exc:
        fail(f"--to {redacted_url(target_url)}: {exc}")
    except StoreError as exc:
        fail(str(exc))
    click.echo(f"copied {copied.users} users and {copied.audit} audit records "
               f"from {redacted_url(source_url)} to {redacted_url(target_url)}")
