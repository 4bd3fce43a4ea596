"""`gateway policy check|explain`: validate the policy files, and show how a request is decided."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import click

from gateway.cli.common import (
    CONTEXT,
    config_option,
    exit_with_problems,
    explicit_config,
    fail,
    opened_stores,
    run_with_accounts,
    valid_roles,
)
from gateway.config import ConfigError, Settings, load_settings
from gateway.policy.model import Principal
from gateway.store.base import StoreError

__all__ = ["policy", "report_policy"]


@click.group(context_settings=CONTEXT)
@config_option
def policy() -> None:
    """Validate the policy files and explain decisions."""


def _policy_settings(ctx: click.Context, directory: str | None) -> tuple[Path, bool, bool, Settings | None]:
    """The policy folder and options: from the config, or --dir alone when there is no config."""
    explicit = explicit_config(ctx)
    try:
        settings: Settings | None = load_settings(explicit)
    except ConfigError as exc:
        if directory is None or explicit is not None:
            exit_with_problems(exc.problems)
        settings = None  # --dir without a config file: check the folder on its own
    if settings is None:
        assert directory is not None
        return Path(directory), False, False, None
    folder = Path(directory) if directory else settings.policy.dir
    return folder, settings.policy.case_insensitive, settings.policy.allow_path_params, settings


def _held_roles(settings: Settings | None) -> set[str] | None:
    """Every role some user holds, or None when there is no store to ask."""
    if settings is None or not settings.store.path.exists():
        return None

    async def read() -> set[str]:
        async with opened_stores(settings) as stores:
            return {role for user in await stores.users.list_users() for role in user.roles}

    try:
        return asyncio.run(read())
    except StoreError:
        return None


@policy.command("check")
@click.option("--dir", "directory", metavar="DIR", help="Policy folder (default: [policy] dir of the config).")
@config_option
@click.pass_context
def policy_check(ctx: click.Context, directory: str | None) -> None:
    """Validate every policy file; print each problem as FILE:LINE: message.

    Errors (exit 2) stop the gateway from loading the policy. Warnings (exit 0) name rules that can
    never decide anything, restricted paths (/X/**) whose look-alikes (/X.csv, /X%20, /x) a broader
    rule lets through, and roles that no user holds."""
    folder, case_insensitive, _, settings = _policy_settings(ctx, directory)
    if report_policy(folder, case_insensitive, settings) != 0:
        sys.exit(2)


def report_policy(folder: Path, case_insensitive: bool, settings: Settings | None) -> int:
    """Print what `policy check` prints; 2 when the policy cannot be loaded, else 0."""
    # Here, not at the top: every other command would import the loader (YAML) and the analysis.
    from gateway.policy.analysis import shadowed_rules, unheld_roles
    from gateway.policy.loader import PolicyError, load_policy
    from gateway.policy.lookalikes import lookalike_siblings

    try:
        loaded = load_policy(folder, case_insensitive=case_insensitive)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(f"{problem.file}:{problem.line}: error: {problem.message}")
        click.echo(f"{len(exc.problems)} error(s): the policy cannot be loaded", err=True)
        return 2
    findings = [*loaded.warnings, *shadowed_rules(loaded), *lookalike_siblings(loaded)]
    held = _held_roles(settings)
    if held is not None:
        findings.extend(unheld_roles(loaded, held))
    for finding in sorted(findings, key=lambda p: (p.file, p.line)):
        click.echo(f"{finding.file}:{finding.line}: warning: {finding.message}")
    # The same version readyz, /.gateway/metrics and each denial's audit line show for the policy in force.
    click.echo(f"policy version: {loaded.version}")
    summary = f"{len(loaded.rules)} rule(s) in {len(loaded.files)} file(s): ok"
    if findings:
        summary += f", {len(findings)} warning(s)"
    if held is None:
        summary += " (no user store found: roles not checked)"
    click.echo(summary, err=True)
    return 0


@policy.command("explain")
@click.argument("method")
@click.argument("path")
@click.option("--user", "user_name", metavar="NAME", help="Decide for this user (roles from the store).")
@click.option("--roles", metavar="A,B", help="Decide for a signed-in user holding these roles.")
@click.option("--anonymous", is_flag=True, help="Decide for a request without a session (the default).")
@click.option("--mfa", is_flag=True, help="With --user or --roles: the session has passed a second factor.")
@click.option("--token", is_flag=True, help="With --user or --roles: the request carries a personal access token.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, for scripts.")
@click.option("--dir", "directory", metavar="DIR", help="Policy folder (default: [policy] dir of the config).")
@config_option
@click.pass_context
def policy_explain(ctx: click.Context, method: str, path: str, user_name: str | None, roles: str | None,
                   anonymous: bool, mfa: bool, token: bool, as_json: bool, directory: str | None) -> None:
    """Show how the gateway decides METHOD PATH: the canonical path, the decision and the rule
    (file and line) that decided it. PATH is written as a browser would send it."""
    if sum(bool(x) for x in (user_name, roles is not None, anonymous)) > 1:
        fail("give at most one of --user, --roles and --anonymous", 2)
    if (mfa or token) and not (user_name or roles is not None):
        fail("--mfa and --token describe a signed-in request: give --user or --roles too", 2)
    from gateway.policy.analysis import explain
    from gateway.policy.loader import PolicyError, load_policy

    folder, case_insensitive, allow_params, settings = _policy_settings(ctx, directory)
    try:
        loaded = load_policy(folder, case_insensitive=case_insensitive)
    except PolicyError as exc:
        exit_with_problems(exc.problems)
    principal: Principal | None = None
    if roles is not None:
        principal = Principal(user="(--roles)", roles=frozenset(valid_roles(roles)), auth_time=time.time(),
                              mfa=mfa, token=token)
    elif user_name:
        if settings is None:
            fail("--user needs the config file to find the user store", 2)
        found = run_with_accounts(ctx, lambda _, stores: stores.users.get_user(user_name))
        if found is None:
            fail(f"no user named {user_name!r}")
        if found.disabled:
            click.echo(f"note: {found.name} is disabled and cannot sign in", err=True)
        principal = Principal(user=found.name, roles=frozenset(found.roles), auth_time=time.time(), mfa=mfa,
                              token=token)
    result = explain(loaded, method.upper(), path, principal, allow_params=allow_params)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        for line in result.lines():
            click.echo(line)
