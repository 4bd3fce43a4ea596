"""The ``gateway`` command: click commands over the same core the server uses, one module per
command group (init, serve, policy, users, sessions, audit), sharing cli/common.py.

``main`` is the console script (pyproject's ``gateway = "gateway.cli:main"``, ``python -m gateway``).
"""

from gateway.cli.root import main

__all__ = ["main"]
