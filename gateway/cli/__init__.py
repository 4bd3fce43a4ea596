"""The ``gateway`` command (being split into one module per command group)."""

from gateway.cli.root import main

__all__ = ["main"]
