"""The ``gateway`` command: serve, and manage users, over the same core the server uses.

Exit codes (the contract): 0 success; 1 operational failure, including a refused change (duplicate
or unknown user, weak password); 2 bad usage or invalid configuration/policy. An operator's mistake
is one line on stderr, never a traceback.
"""

from __future__ import annotations

import asyncio
import errno
import getpass
import json
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from gateway.auth.accounts import Accounts, check_user_name, parse_roles
from gateway.auth.passwords import MAX_LENGTH, Passwords, WeakPassword, check_strength
from gateway.auth.sessions import SessionManager, printable, short_id
from gateway.config import ConfigError, Settings, load_settings
from gateway.durations import parse_duration
from gateway.init import (
    DEFAULT_ADMIN,
    DEFAULT_HOST,
    DEFAULT_PORT,
    DEFAULT_UPSTREAM,
    POLICY_FILE,
    POLICY_FOLDER,
    SECRET_FILE,
    STORE_FILE,
    STORE_FOLDER,
    InitOptions,
    Writer,
    check_options,
    config_file,
    first_clash,
    store_files,
    write_files,
)
from gateway.observe.audit import Audit, audit_line, configure_audit_log
from gateway.policy import PolicyError, Principal, load_policy
from gateway.policy.analysis import explain, shadowed_rules, unheld_roles
from gateway.policy.lookalikes import lookalike_siblings
from gateway.store.base import AuditRecord, SessionRecord, StoreError
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


def operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment (containers): the audit still says "cli"
        return "unknown"


def run_with_accounts(
    ctx: click.Context,
    action: Callable[[Accounts, SqliteStore], Awaitable[T]],
    audit: Callable[[T], tuple[str, dict[str, Any]]] | None = None,
) -> T:
    """Run ``action`` against the store; on success record the audit event ``audit(result)`` names."""
    settings = settings_from(ctx)
    try:
        return asyncio.run(with_accounts(settings, action, audit))
    except (StoreError, WeakPassword) as exc:
        fail(str(exc))


async def with_accounts(
    settings: Settings,
    action: Callable[[Accounts, SqliteStore], Awaitable[T]],
    audit: Callable[[T], tuple[str, dict[str, Any]]] | None = None,
) -> T:
    store = SqliteStore(settings.store.path)
    await store.open()
    try:
        result = await action(Accounts(store, Passwords(settings.passwords)), store)
        if audit is not None:
            event, fields = audit(result)
            configure_audit_log()  # the same JSON line as the gateway's, on this command's stderr
            trail = Audit(store)
            trail.record(event, by="cli", operator=operator(), **fields)
            await trail.flush()
        return result
    finally:
        await store.close()


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


@main.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path), metavar="[DIR]")
@click.option("--upstream", default=DEFAULT_UPSTREAM, show_default=True, metavar="URL",
              help="The app behind the gateway: scheme://host:port.")
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int, help="Port to listen on.")
@click.option("--admin", "admin_name", default=DEFAULT_ADMIN, show_default=True, metavar="NAME",
              help="Name of the first user, who gets the role admin.")
@click.option("--password-stdin", is_flag=True, help="Read the admin's password from standard input instead of prompting.")
@click.option("--insecure-cookie", is_flag=True,
              help="Write session.secure_cookie = false, for a plain-http trial on another host than 127.0.0.1.")
@click.pass_context
def init(ctx: click.Context, directory: Path, upstream: str, host: str, port: int, admin_name: str,
         password_stdin: bool, insecure_cookie: bool) -> None:
    """Set up a new gateway in DIR (default: the current folder; created if missing).

    Writes DIR/gateway.toml (every setting explained), DIR/secret.key (readable only by you),
    an example policy in DIR/policies/ and the store DIR/var/gateway.db holding the first user,
    an admin, whose password is asked twice (or read with --password-stdin). Then checks the
    policy and prints the command that starts the gateway.

    Never overwrites: if any of these files exists, nothing is changed (exit 1). A refused password
    or any other failure leaves nothing behind, so init can simply be run again."""
    if (ctx.find_root().obj or {}).get("config"):
        fail("init writes DIR/gateway.toml itself: give the folder as DIR, not --config", 2)
    options = InitOptions(upstream=upstream, host=host, port=port, secure_cookie=not insecure_cookie)
    for problem in check_options(options):
        fail(problem, 2)
    valid_name(admin_name)
    clash = first_clash(directory)
    if clash is not None:
        fail(f"{clash} already exists; init never overwrites (nothing was changed)")
    password = read_password(password_stdin)
    try:
        check_strength(password, admin_name)  # before any file exists: a refusal leaves nothing to clean
    except WeakPassword as exc:
        fail(f"{exc} (nothing was written)")

    config = config_file(directory)
    writer = Writer()
    try:
        write_files(directory, options, writer)
        settings = load_settings(config, require_secret=True)
        store = store_files(settings.store.path)  # elsewhere than DIR/var only by GATEWAY_STORE_PATH
        for path in store:
            if path.exists():
                raise FileExistsError(errno.EEXIST, "exists", str(path))
        writer.adopt(store)  # SQLite creates these; a failure removes them with the rest
        asyncio.run(with_accounts(
            settings, lambda accounts, _: accounts.add(admin_name, password, ("admin",)),
            lambda added: ("user.added", {"user": added.name, "roles": list(added.roles)}),
        ))
    except BaseException as exc:
        writer.undo()
        if isinstance(exc, FileExistsError):
            fail(f"{exc.filename} already exists; init never overwrites (nothing was changed)")
        if isinstance(exc, ConfigError):
            for problem in exc.problems:
                click.echo(f"gateway: {problem}", err=True)
            fail("the new config does not load (nothing was left behind)", 2)
        if isinstance(exc, (StoreError, WeakPassword)):
            fail(f"{exc} (nothing was left behind)")
        if isinstance(exc, OSError):
            fail(f"cannot write {exc.filename or directory}: {exc.strerror} (nothing was left behind)")
        raise

    default_store = directory / STORE_FOLDER / STORE_FILE
    store_path = default_store if settings.store.path == default_store.resolve() else settings.store.path
    for path, what in ((config, "the configuration, every setting explained"),
                       (directory / SECRET_FILE, "the key that signs session cookies, readable only by you"),
                       (directory / POLICY_FOLDER / POLICY_FILE, "an example policy"),
                       (store_path, f"the store, with user {admin_name} (role admin)")):
        click.echo(f"created {path}: {what}")
    click.echo("policy check:")
    status = report_policy(settings.policy.dir, settings.policy.case_insensitive, settings)
    scheme = "https" if settings.server.tls else "http"
    shown_host = f"[{settings.server.host}]" if ":" in settings.server.host else settings.server.host
    click.echo("next, start the gateway:")
    click.echo(f"  gateway --config {shlex.quote(str(config))} serve")
    click.echo(f"then open {scheme}://{shown_host}:{settings.server.port}/ and sign in as {admin_name}.")
    if settings.session.secure_cookie:
        click.echo("The session cookie is Secure: beyond 127.0.0.1/localhost browsers need HTTPS "
                   "([server] certfile/keyfile, or a TLS terminator).")
    if status:
        sys.exit(status)


@main.command()
@config_option
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run the gateway (listens on [server] host:port, forwards to [upstream] url)."""
    settings = settings_from(ctx, require_secret=True)
    from gateway.server import configure_logging
    from gateway.server import serve as run_server

    configure_logging(settings)

    async def preflight() -> None:
        # Fail here with one line, not later inside the server's start-up with a traceback. This
        # also migrates the store once, before any worker process opens it.
        store = SqliteStore(settings.store.path)
        await store.open()
        await store.close()

    try:
        asyncio.run(preflight())
    except StoreError as exc:
        fail(f"store.path: {exc}")

    try:
        # Checked here, once, where a bad policy is one clear line (a worker would crash on it).
        policy = load_policy(settings.policy.dir, case_insensitive=settings.policy.case_insensitive)
        run_server(settings, policy)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(f"gateway: {problem}", err=True)
        sys.exit(2)


@main.group(context_settings=CONTEXT)
@config_option
def policy() -> None:
    """Validate the policy files and explain decisions."""


def _policy_settings(ctx: click.Context, directory: str | None) -> tuple[Path, bool, bool, Settings | None]:
    """The policy folder and options: from the config, or --dir alone when there is no config."""
    root = ctx.find_root()
    explicit = (root.obj or {}).get("config")
    try:
        settings: Settings | None = load_settings(explicit)
    except ConfigError as exc:
        if directory is None or explicit is not None:
            for problem in exc.problems:
                click.echo(f"gateway: {problem}", err=True)
            sys.exit(2)
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
        store = SqliteStore(settings.store.path)
        await store.open()
        try:
            return {role for user in await store.list_users() for role in user.roles}
        finally:
            await store.close()

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
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, for scripts.")
@click.option("--dir", "directory", metavar="DIR", help="Policy folder (default: [policy] dir of the config).")
@config_option
@click.pass_context
def policy_explain(ctx: click.Context, method: str, path: str, user_name: str | None, roles: str | None,
                   anonymous: bool, as_json: bool, directory: str | None) -> None:
    """Show how the gateway decides METHOD PATH: the canonical path, the decision and the rule
    (file and line) that decided it. PATH is written as a browser would send it."""
    if sum(bool(x) for x in (user_name, roles is not None, anonymous)) > 1:
        fail("give at most one of --user, --roles and --anonymous", 2)
    folder, case_insensitive, allow_params, settings = _policy_settings(ctx, directory)
    try:
        loaded = load_policy(folder, case_insensitive=case_insensitive)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(f"gateway: {problem}", err=True)
        sys.exit(2)
    principal: Principal | None = None
    if roles is not None:
        principal = Principal(user="(--roles)", roles=frozenset(valid_roles(roles)), auth_time=time.time())
    elif user_name:
        if settings is None:
            fail("--user needs the config file to find the user store", 2)
        found = run_with_accounts(ctx, lambda _, store: store.get_user(user_name))
        if found is None:
            fail(f"no user named {user_name!r}")
        if found.disabled:
            click.echo(f"note: {found.name} is disabled and cannot sign in", err=True)
        principal = Principal(user=found.name, roles=frozenset(found.roles), auth_time=time.time())
    result = explain(loaded, method.upper(), path, principal, allow_params=allow_params)
    if as_json:
        click.echo(json.dumps(result.as_json(), indent=2))
    else:
        for line in result.lines():
            click.echo(line)


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
    user = run_with_accounts(ctx, lambda accounts, _: accounts.add(name, password, role_tuple),
                             lambda added: ("user.added", {"user": added.name, "roles": list(added.roles)}))
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
    ended = run_with_accounts(ctx, lambda accounts, _: accounts.set_password(name, password),
                              lambda n: ("user.password_changed", {"user": name, "sessions_ended": n}))
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


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


@main.group(context_settings=CONTEXT)
@config_option
def sessions() -> None:
    """List and revoke live sessions (revocation reaches a running gateway at once)."""


@sessions.command("list")
@click.option("--user", "user_name", metavar="NAME", help="Only this user's sessions.")
@config_option
@click.pass_context
def sessions_list(ctx: click.Context, user_name: str | None) -> None:
    """List live sessions: user, created, last seen, client address, user agent, short id."""

    settings = settings_from(ctx)

    async def action(accounts: Accounts, store: SqliteStore) -> list[SessionRecord]:
        manager = SessionManager(store, settings.session)
        if user_name is None:
            return await manager.live_sessions()
        return await manager.live_sessions((await accounts.require(user_name)).id)

    rows = run_with_accounts(ctx, action)
    click.echo(f"{'ID':<12}  {'USER':<20} {'CREATED (UTC)':<19}  {'LAST SEEN (UTC)':<19}  {'CLIENT':<15}  USER AGENT")
    for row in rows:
        click.echo(f"{short_id(row.id_hash):<12}  {row.user_name:<20} {_when(row.created_at)}  {_when(row.last_seen)}"
                   f"  {printable(row.client):<15}  {printable(row.user_agent[:60])}")


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

    async def action(accounts: Accounts, store: SqliteStore) -> int:
        if everything:
            return await store.delete_all_sessions()
        if user_name is not None:
            return await store.delete_user_sessions((await accounts.require(user_name)).id)
        assert session_id is not None
        found = await store.find_sessions(session_id.lower()) if len(session_id) >= 6 else []
        if len(found) != 1:
            raise StoreError(f"no session with id {session_id!r}" if not found else f"id {session_id!r} is ambiguous")
        await store.delete_session(found[0].id_hash)
        owner.append(found[0].user_name)
        return 1

    owner: list[str] = []
    scope: dict[str, Any] = {"all": True} if everything else {"user": user_name} if user_name else {"session": session_id}
    ended = run_with_accounts(ctx, action, lambda n: ("session.revoked", {**scope, **({"user": owner[0]} if owner else {}),
                                                                          "count": n}))
    click.echo(f"{ended} session(s) ended")


@main.command("audit")
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

    async def action(_: Accounts, store: SqliteStore) -> list[AuditRecord]:
        return await store.list_audit(user=user_name, since=start, limit=limit)

    for record in run_with_accounts(ctx, action):
        if as_json:
            click.echo(audit_line(record))
        else:
            detail = " ".join(f"{k}={v}" for k, v in json.loads(record.detail).items())
            click.echo(printable(f"{_when(record.time)}  {record.event:<22} {record.user or '-':<16} "
                                 f"{record.client or '-':<15} {detail}"))


if __name__ == "__main__":
    main()
