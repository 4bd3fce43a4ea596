"""`gateway serve`: check everything that can be checked once, then run the server."""

from __future__ import annotations

import asyncio

import click

from gateway.cli.common import config_option, exit_with_problems, fail, opened_stores, settings_from
from gateway.config import Settings
from gateway.store.base import StoreError
from gateway.store.stores import OpenFailed

__all__ = ["serve"]


def _store_key(settings: Settings, exc: StoreError) -> str:
    """The setting at fault: store.path when it alone names the store, else the URL's key."""
    if {settings.store.users, settings.store.sessions} == {f"sqlite:///{settings.store.path}"}:
        return "store.path"
    side = exc.side if isinstance(exc, OpenFailed) else "both"
    return {"users": "store.users", "sessions": "store.sessions"}.get(side, "store.users/store.sessions")


@click.command()
@config_option
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the gateway (listens on [server] host:port, forwards to [upstream] url)."""
    settings = settings_from(ctx, require_secret=True)
    from gateway.policy.loader import PolicyError, load_policy
    from gateway.server import configure_logging
    from gateway.server import serve as run_server

    configure_logging(settings)

    async def preflight() -> None:
        # Fail here with one line, not later inside the server's start-up with a traceback. This
        # also migrates the store once, before any worker process opens it.
        async with opened_stores(settings):
            pass

    try:
        asyncio.run(preflight())
    except StoreError as exc:
        fail(f"{_store_key(settings, exc)}: {exc}", code=2)  # unusable as configured: the operator must act

    try:
        # Checked here, once, where a bad policy is one clear line (a worker would crash on it).
        policy = load_policy(settings.policy.dir, case_insensitive=settings.policy.case_insensitive)
        run_server(settings, policy)
    except PolicyError as exc:
        exit_with_problems(exc.problems)
