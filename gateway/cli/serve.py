"""`gateway serve`: check everything that can be checked once, then run the server."""

from __future__ import annotations

import asyncio

import click

from gateway.cli.common import config_option, exit_with_problems, fail, opened_stores, settings_from
from gateway.store.base import StoreError

__all__ = ["serve"]


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
        urls = {settings.store.users, settings.store.sessions}
        keys = "store.path" if urls == {f"sqlite:///{settings.store.path}"} else "store.users/store.sessions"
        fail(f"{keys}: {exc}", code=2)  # unusable as configured: the operator must change something

    try:
        # Checked here, once, where a bad policy is one clear line (a worker would crash on it).
        policy = load_policy(settings.policy.dir, case_insensitive=settings.policy.case_insensitive)
        run_server(settings, policy)
    except PolicyError as exc:
        exit_with_problems(exc.problems)
