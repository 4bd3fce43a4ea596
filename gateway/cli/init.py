"""`gateway init`: set up a new gateway folder (config, key, example policy, store with an admin),
leaving nothing behind on any failure."""

from __future__ import annotations

import asyncio
import errno
import shlex
import sys
from pathlib import Path

import click

from gateway.auth.passwords import WeakPassword, check_strength
from gateway.cli.common import exit_with_problems, explicit_config, fail, read_password, valid_name, with_accounts
from gateway.cli.policy import report_policy
from gateway.cli.scaffold import (
    DEFAULT_ADMIN,
    POLICY_FILE,
    POLICY_FOLDER,
    STORE_FILE,
    STORE_FOLDER,
    Writer,
    config_file,
    first_clash,
    store_files,
    write_files,
)
from gateway.config import SECRET_FILE, ConfigError, InitOptions, check_options, load_settings
from gateway.store.base import StoreError

__all__ = ["init"]

_DEFAULTS = InitOptions()


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path), metavar="[DIR]")
@click.option("--upstream", default=_DEFAULTS.upstream, show_default=True, metavar="URL",
              help="The app behind the gateway: scheme://host:port.")
@click.option("--host", default=_DEFAULTS.host, show_default=True, help="Address to listen on.")
@click.option("--port", default=_DEFAULTS.port, show_default=True, type=int, help="Port to listen on.")
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
    if explicit_config(ctx):
        fail("init writes DIR/gateway.toml itself: give the folder as DIR, not --config", 2)
    options = InitOptions(upstream=upstream, host=host, port=port, secure_cookie=not insecure_cookie)
    problems = check_options(options)
    if problems:
        exit_with_problems(problems)
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
            exit_with_problems(exc.problems, then="the new config does not load (nothing was left behind)")
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
