"""The ``gateway`` command group: its --config and --version, and the command groups under it.

Each command group lives in its own module (init, serve, policy, users, sessions, audit) over
what cli/common.py shares; this module only gathers them.
"""

from __future__ import annotations

import click

from gateway.cli.audit import audit
from gateway.cli.common import CONTEXT, config_option
from gateway.cli.init import init
from gateway.cli.policy import policy
from gateway.cli.serve import serve
from gateway.cli.sessions import sessions
from gateway.cli.store import store
from gateway.cli.users import users

__all__ = ["main"]


@click.group(context_settings=CONTEXT)
@config_option
@click.version_option(package_name="gateway", prog_name="gateway")
def main() -> None:
    """Authentication gateway: sign-in pages, a role policy and a streaming reverse proxy
    in front of an unmodified web app."""


for command in (init, serve, policy, users, sessions, audit, store):
    main.add_command(command)
